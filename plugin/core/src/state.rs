//! The plugin's view of its persistent state. Inside the component this is
//! the host's `storage` import; in native tests an in-memory map.

use std::collections::BTreeMap;

/// Key-value state in named collections. Every read and write of the
/// mapping and the ledger goes through it; a failure is a text.
pub trait StateStore {
    /// The value under `key` in `collection`, if any.
    fn get(&mut self, collection: &str, key: &str) -> Result<Option<String>, String>;
    /// Sets `key` in `collection` to `value`.
    fn put(&mut self, collection: &str, key: &str, value: &str) -> Result<(), String>;
    /// Removes `key` from `collection`; removing a missing key is not an error.
    fn delete(&mut self, collection: &str, key: &str) -> Result<(), String>;
}

/// An in-memory store for tests and tooling.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemoryState {
    /// Every entry, by (collection, key).
    pub entries: BTreeMap<(String, String), String>,
}

impl StateStore for MemoryState {
    fn get(&mut self, collection: &str, key: &str) -> Result<Option<String>, String> {
        Ok(self
            .entries
            .get(&(collection.to_string(), key.to_string()))
            .cloned())
    }
    fn put(&mut self, collection: &str, key: &str, value: &str) -> Result<(), String> {
        self.entries
            .insert((collection.to_string(), key.to_string()), value.to_string());
        Ok(())
    }
    fn delete(&mut self, collection: &str, key: &str) -> Result<(), String> {
        self.entries
            .remove(&(collection.to_string(), key.to_string()));
        Ok(())
    }
}

/// Longest key part kept as it is (after escaping); a longer one is cut and
/// hashed, so that a key of three parts stays well within the host's limit
/// on key length whatever Stripe sends (metadata values run to 500
/// characters, up to 2,000 bytes).
pub const MAX_PART_BYTES: usize = 160;
/// How much of a long part is kept, readable, before its digest.
const KEPT_OF_LONG_PART: usize = 80;

/// The storage key made of `parts`, unambiguously: two different lists of
/// parts never give the same key.
///
/// Each part is escaped (`%` → `%25`, `/` → `%2F`) and the parts are joined
/// with `/`, so a key splits back into its parts at its slashes. A part
/// longer than [`MAX_PART_BYTES`] once escaped is replaced by the start of
/// its escaped form, `%H`, and the SHA-256 of the whole part in hex: `%H`
/// never appears in an escaped part, so a shortened part cannot equal a
/// kept one. Parts without `%` or `/` that are not long are kept as they
/// are, so `key(&["payment", "pi_1"])` is `payment/pi_1`.
pub fn key(parts: &[&str]) -> String {
    debug_assert!(!parts.is_empty(), "a key has at least one part");
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        let escaped = escape(part);
        if escaped.len() <= MAX_PART_BYTES {
            out.push_str(&escaped);
        } else {
            out.push_str(shortened(&escaped));
            out.push_str("%H");
            out.push_str(&sha256_hex(part));
        }
    }
    out
}

/// The SHA-256 of `bytes` (a text's or a body's), in lower-case hex.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    crate::signature::encode_hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes.as_ref()))
}

fn escape(part: &str) -> std::borrow::Cow<'_, str> {
    if !part.contains(['%', '/']) {
        return part.into();
    }
    part.replace('%', "%25").replace('/', "%2F").into()
}

/// The start of an escaped part, cut at a character boundary and never
/// inside an escape.
fn shortened(escaped: &str) -> &str {
    let mut end = KEPT_OF_LONG_PART.min(escaped.len());
    while !escaped.is_char_boundary(end) {
        end -= 1;
    }
    // An escape is three bytes: do not keep a `%` or `%2` without the rest.
    let bytes = escaped.as_bytes();
    for back in 1..=2 {
        if end >= back && bytes[end - back] == b'%' {
            end -= back;
            break;
        }
    }
    &escaped[..end]
}

#[cfg(test)]
mod key_tests {
    use super::*;
    use proptest::prelude::*;

    /// Parts drawn to collide: slashes, percent signs, the marker of a
    /// shortened part, multi-byte characters, and lengths around the limit.
    fn part() -> impl Strategy<Value = String> {
        prop_oneof!["[a-c/%H2F5]{0,6}", "[a/%]{150,200}", "(é|/|%|x){40,90}",]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn distinct_parts_give_distinct_keys(
            a in proptest::collection::vec(part(), 1..4),
            b in proptest::collection::vec(part(), 1..4),
        ) {
            let ka = key(&a.iter().map(String::as_str).collect::<Vec<_>>());
            let kb = key(&b.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(a == b, ka == kb, "{:?} {:?} → {} {}", a, b, ka, kb);
        }

        #[test]
        fn a_tenant_and_an_id_give_distinct_keys(
            t1 in part(), i1 in part(), t2 in part(), i2 in part(),
        ) {
            let same = t1 == t2 && i1 == i2;
            prop_assert_eq!(same, key(&[&t1, &i1]) == key(&[&t2, &i2]));
        }

        #[test]
        fn a_key_part_is_bounded(p in "\\PC{0,500}") {
            prop_assert!(key(&[&p]).len() <= MAX_PART_BYTES.max(KEPT_OF_LONG_PART + 2 + 64));
        }
    }

    #[test]
    fn the_reported_collision_is_gone() {
        // POST /v1/ledger/co%2Fvictim {"id":"inv1"} against
        // POST /v1/ledger/co {"id":"victim/inv1"}.
        assert_ne!(key(&["co/victim", "inv1"]), key(&["co", "victim/inv1"]));
    }

    #[test]
    fn plain_parts_are_kept_as_they_are() {
        assert_eq!(key(&["payment", "pi_1"]), "payment/pi_1");
        assert_eq!(key(&["tenant-1"]), "tenant-1");
        assert_eq!(key(&["a/b", "50%"]), "a%2Fb/50%25");
        let long = "t".repeat(500);
        let k = key(&[&long, "inv1"]);
        assert!(k.starts_with(&"t".repeat(80)) && k.ends_with("/inv1") && k.contains("%H"));
        assert_eq!(k.len(), 80 + 2 + 64 + 5);
    }
}
