//! The SQL of a group commit, written once for both backends (SQLite and
//! PostgreSQL both take `$N` parameters): one statement per table for many
//! rows or keys, in chunks whose sizes are powers of two so that each
//! backend prepares and caches a few texts rather than one per group size.
//!
//! Knows nothing about connections or transactions: callers run the texts.

/// Keys one statement checks or writes: far below the bound parameters
/// SQLite (32,766) and PostgreSQL (65,535) accept.
pub(crate) const KEYS_PER_STATEMENT: usize = 512;
/// Event rows one statement writes (nine parameters each).
pub(crate) const ROWS_PER_STATEMENT: usize = 128;

/// `items` in chunks whose sizes are powers of two, at most `max` (a power
/// of two): 13 items go as 8, 4 and 1. Each chunk size is its own SQL text,
/// prepared and cached per connection: this keeps their number to a few
/// per statement rather than one per group size.
pub(crate) fn pow2_chunks<T>(mut items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    debug_assert!(max.is_power_of_two());
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let n = if items.len() >= max {
            max
        } else {
            1 << (usize::BITS - 1 - items.len().leading_zeros())
        };
        let (chunk, rest) = items.split_at(n);
        items = rest;
        Some(chunk)
    })
}

/// `n` copies of `shape` joined by `sep`, each `?` in them numbered `$1`,
/// `$2`... in order: the parameter lists of one statement for many rows.
pub(crate) fn numbered(n: usize, shape: &str, sep: &str) -> String {
    let mut next = 0;
    let mut out = String::with_capacity(n * (shape.len() + sep.len() + 8));
    for i in 0..n {
        if i > 0 {
            out.push_str(sep);
        }
        for c in shape.chars() {
            if c == '?' {
                next += 1;
                out.push('$');
                out.push_str(&next.to_string());
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// `(collection = $1 AND key = $2) OR ...` for `n` keys.
pub(crate) fn key_matches(n: usize) -> String {
    numbered(n, "(collection = ? AND key = ?)", " OR ")
}

/// `($1, $2, $3, 1, $4), ...` for `n` rows of (collection, key, value, now).
pub(crate) fn upsert_rows(n: usize) -> String {
    numbered(n, "(?, ?, ?, 1, ?)", ", ")
}

/// Status of each of `n` event ids. By id alone: a condition on status
/// could lead the planner to the status index, a scan of every
/// processed event.
pub(crate) fn event_statuses(n: usize) -> String {
    format!(
        "SELECT id, status FROM events WHERE id IN ({})",
        numbered(n, "?", ", ")
    )
}

/// Version of each of `n` state keys (collection, key).
pub(crate) fn versions(n: usize) -> String {
    format!(
        "SELECT collection, key, version FROM plugin_state WHERE {}",
        key_matches(n)
    )
}

/// `n` event rows of (id, type, account, created, livemode,
/// received_at, status, payload, processed_at).
pub(crate) fn events(n: usize) -> String {
    format!(
        "INSERT INTO events (id, type, account, created, livemode, received_at, status, attempts, payload, processed_at)
         VALUES {}
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = events.attempts + 1,
             last_error = NULL, processed_at = excluded.processed_at,
             type = excluded.type, account = excluded.account, created = excluded.created,
             livemode = excluded.livemode, payload = excluded.payload
         WHERE events.status NOT IN ('processed', 'ignored')",
        numbered(n, "(?, ?, ?, ?, ?, ?, ?, 1, ?, ?)", ", ")
    )
}

/// `n` state rows of (collection, key, value, version, updated_at),
/// their final versions decided by the group.
pub(crate) fn upserts(n: usize) -> String {
    format!(
        "INSERT INTO plugin_state (collection, key, value, version, updated_at) VALUES {}
         ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value,
             version = excluded.version, updated_at = excluded.updated_at",
        numbered(n, "(?, ?, ?, ?, ?)", ", ")
    )
}

/// Deletes `n` state keys.
pub(crate) fn deletes(n: usize) -> String {
    format!("DELETE FROM plugin_state WHERE {}", key_matches(n))
}

/// `n` effect rows of (seq, event_id, kind, body, created_at).
pub(crate) fn effects(n: usize) -> String {
    format!(
        "INSERT INTO effects (seq, event_id, kind, body, created_at) VALUES {}",
        numbered(n, "(?, ?, ?, ?, ?)", ", ")
    )
}

/// The next outbox number.
pub(crate) const NEXT_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) + 1 FROM effects";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_for_many_rows_are_numbered_and_chunked_by_powers_of_two() {
        assert_eq!(numbered(2, "(?, ?, 1)", ", "), "($1, $2, 1), ($3, $4, 1)");
        assert_eq!(key_matches(1), "(collection = $1 AND key = $2)");
        let items: Vec<u32> = (0..1300).collect();
        let sizes: Vec<usize> = pow2_chunks(&items, 512).map(<[u32]>::len).collect();
        assert_eq!(sizes, [512, 512, 256, 16, 4]);
        let rejoined: Vec<u32> = pow2_chunks(&items, 512).flatten().copied().collect();
        assert_eq!(rejoined, items);
        assert_eq!(pow2_chunks::<u32>(&[], 8).count(), 0);
    }
}
