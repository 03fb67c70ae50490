//! Which one of several host processes on one database does a job that
//! must run once at a time (the outbox relay): on PostgreSQL, the holder of
//! a session-level advisory lock named after the job, on a connection kept
//! for it, so that the lock goes when the process dies or its connection
//! breaks; on SQLite, which one process serves, that process.
//!
//! Knows nothing about the jobs it is asked about.

use super::{Db, Pool};
use anyhow::Result;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

/// The right to run the job `name` until it is dropped (or, on
/// PostgreSQL, until its connection breaks: ask [`Lease::held`]).
pub struct Lease {
    /// The connection that holds the advisory lock (`None`: SQLite).
    conn: Option<PgConnection>,
}

/// The advisory lock's key for `name`: the first eight bytes of its SHA-256,
/// so that two jobs' names do not share a lock by accident.
fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("psa-billing lease {name}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("eight bytes"))
}

impl Db {
    /// Takes the lease of the job `name` if no other process holds it
    /// (`None`: another one does; ask again later).
    pub async fn lease(&self, name: &str) -> Result<Option<Lease>> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(Some(Lease { conn: None }));
        };
        // Out of the pool: the lock lives as long as this connection.
        let mut conn = pool.acquire().await?.detach();
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lock_key(name))
            .fetch_one(&mut conn)
            .await?;
        if !taken {
            let _ = conn.close().await;
            return Ok(None);
        }
        Ok(Some(Lease { conn: Some(conn) }))
    }
}

impl Lease {
    /// Whether the lease is still held: its connection answers (a broken
    /// one has lost its lock to whichever process takes it next).
    pub async fn held(&mut self) -> bool {
        match &mut self.conn {
            None => true,
            Some(conn) => conn.ping().await.is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_by_name_and_stay_put() {
        assert_ne!(lock_key("relay:a"), lock_key("relay:b"));
        assert_eq!(lock_key("relay:a"), lock_key("relay:a"));
    }
}
