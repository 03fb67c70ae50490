//! The checkpoint thread of a SQLite file: copies the WAL back into the
//! database file (PASSIVE: it never blocks the writer or a reader), so that
//! the commit thread does not stall a whole group on SQLite's automatic
//! checkpoint, with its writes and its fsync of the database file.
//!
//! Knows nothing about what is committed: the commit thread asks.

use super::batch_scheduling;
use anyhow::{Context, Result};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Groups committed between two background checkpoints (a group writes
/// about twenty pages, so about SQLite's own 1000-page interval).
pub(super) const GROUPS_PER_CHECKPOINT: u32 = 48;

/// WAL pages from which the commit thread finishes a checkpoint (see
/// `finish_checkpoint`). Its copy ends with an fsync of the database file
/// that the next group waits for, so a small WAL is left to grow.
const CATCH_UP_PAGES: i64 = 2000;

/// The checkpoint thread, seen from the commit thread.
pub(super) struct Checkpoints {
    /// Asks for a checkpoint (full: one is pending already).
    pub(super) kick: std::sync::mpsc::SyncSender<()>,
    /// Set when a checkpoint has copied every frame there was when it began
    /// and the WAL holds at least `CATCH_UP_PAGES`: the commit thread's cue
    /// to copy the rest (`finish_checkpoint`).
    pub(super) caught_up: Arc<AtomicBool>,
}

/// A PASSIVE checkpoint: it copies what no reader still needs and leaves
/// the rest for the next time. (WAL pages, pages copied.)
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    // The row is (busy, WAL pages, pages copied).
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

/// Copies, on the commit thread between two groups, the few frames written
/// while the checkpoint thread was copying the rest. The WAL only starts
/// over from its beginning when a write begins with every frame copied,
/// which never happens while groups follow one another; without this it
/// grew to the 10,000-page safety net (41 MB), where the checkpoint SQLite
/// runs inside a COMMIT makes that group's deliveries wait for the copy.
/// Only the commit thread writes, so nothing lands in between and the next
/// group restarts the WAL: it now cycles at 2,000-4,000 pages under load.
pub(super) fn finish_checkpoint(conn: &Connection) {
    match checkpoint(conn) {
        Ok((pages, copied)) => tracing::trace!(pages, copied, "checkpoint caught up"),
        Err(e) => tracing::debug!(error = %e, "catching up the checkpoint failed"),
    }
}

/// Starts the thread that checkpoints `path` each time it is asked to; it
/// ends with the commit thread (the asking side).
pub(super) fn spawn_checkpointer(path: &Path) -> Result<Checkpoints> {
    let conn = Connection::open(path)
        .with_context(|| format!("opening {} for checkpoints", path.display()))?;
    let (kick, asked) = std::sync::mpsc::sync_channel::<()>(1);
    let caught_up = Arc::new(AtomicBool::new(false));
    let done_flag = caught_up.clone();
    std::thread::Builder::new()
        .name("psa-billing-checkpoint".into())
        .spawn(move || {
            batch_scheduling();
            while asked.recv().is_ok() {
                match checkpoint(&conn) {
                    Ok((pages, copied)) => {
                        tracing::trace!(pages, copied, "checkpoint");
                        if pages == copied && pages >= CATCH_UP_PAGES {
                            done_flag.store(true, Ordering::Release);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries")
                    }
                }
            }
        })
        .context("starting the checkpoint thread")?;
    Ok(Checkpoints { kick, caught_up })
}
