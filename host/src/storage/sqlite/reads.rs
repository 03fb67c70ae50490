//! The plugin's point reads on a SQLite file, in place on the calling
//! thread: a few read-only connections, each used by one caller at a time.
//! In WAL mode a reader never waits for the writer; a read sees the last
//! committed state and the commit's version check catches what changes
//! after it.
//!
//! Knows nothing about commits or checkpoints.

use crate::storage::StateKey;
use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Idle connections kept: one per thread that reads at once is enough.
const MAX_IDLE: usize = 8;

/// Read connections to one SQLite file.
pub(crate) struct SqliteReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReads {
    /// Opens one connection now, so that a file that cannot be read fails
    /// at start rather than on the first delivery.
    pub(crate) fn open(path: &Path) -> Result<SqliteReads> {
        let reads = SqliteReads {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        };
        let first = reads.connect()?;
        reads.put_back(first);
        Ok(reads)
    }

    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            // NO_MUTEX: a connection serves one caller at a time (see `idle`).
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {} for reads", self.path.display()))?;
        // A reader waits only while another connection recovers the WAL index.
        conn.busy_timeout(Duration::from_secs(2))?;
        Ok(conn)
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// The value and version of one plugin state key.
    pub(crate) fn state(&self, key: &StateKey) -> Result<Option<(String, i64)>> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let found = conn
            .prepare_cached(
                "SELECT value, version FROM plugin_state WHERE collection = ?1 AND key = ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_row((&key.0, &key.1), |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            });
        self.put_back(conn);
        found.with_context(|| format!("reading {}/{}", key.0, key.1))
    }
}
