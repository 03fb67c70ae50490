// psa:billing/storage, on the SQLite database of the call in progress.
// Calls are synchronous and run inside the transaction the host opened
// (src/billing.js), so a failed event leaves no trace of its writes.
let current = null;

/** Binds the storage to `db` (a better-sqlite3 Database) for `fn`'s duration. */
export function withDatabase(db, fn) {
  const previous = current;
  current = db;
  try {
    return fn();
  } finally {
    current = previous;
  }
}

function database() {
  if (!current) throw { payload: { tag: 'not-permitted' } };
  return current;
}

const MAX_VALUE_BYTES = 256 * 1024;

export function get(collection, key) {
  const row = database()
    .prepare('SELECT value FROM plugin_state WHERE collection = ? AND key = ?')
    .get(collection, key);
  return row ? row.value : undefined;
}

export function put(collection, key, value) {
  if (Buffer.byteLength(value) > MAX_VALUE_BYTES) {
    throw { payload: { tag: 'too-large', val: MAX_VALUE_BYTES } };
  }
  database()
    .prepare(
      `INSERT INTO plugin_state (collection, key, value, version, updated_at) VALUES (?, ?, ?, 1, ?)
       ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value,
         version = plugin_state.version + 1, updated_at = excluded.updated_at`,
    )
    .run(collection, key, value, Math.floor(Date.now() / 1000));
}

function remove(collection, key) {
  database().prepare('DELETE FROM plugin_state WHERE collection = ? AND key = ?').run(collection, key);
}
export { remove as delete };
