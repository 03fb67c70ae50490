//! Time as the host counts it: wall-clock seconds for records and the
//! guest's `clock` import, and the epoch ticks that plugin deadlines are
//! counted in.
//!
//! A leaf: knows nothing about the database, the plugin or HTTP.

use std::time::Duration;

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How often the engine's epoch advances; deadlines are counted in these ticks.
pub const TICK: Duration = Duration::from_millis(2);

/// `d` in epoch ticks, rounded up.
pub fn ticks(d: Duration) -> u64 {
    d.as_micros().div_ceil(TICK.as_micros()) as u64
}
