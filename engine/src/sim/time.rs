//! Simulated time: integer microseconds since the start of the run. There is no wall clock.

/// Microseconds since the start of the run.
pub type SimTime = u64;

/// The `origin_server_ts` (ms since the Unix epoch) that simulated time 0 maps to.
pub const EPOCH_MS: i64 = 1_700_000_000_000;

/// Milliseconds of simulated time, for reports.
pub fn to_ms(t: SimTime) -> u64 {
    t / 1000
}

/// A server's wall clock reading for `origin_server_ts`, with its configured skew.
pub fn origin_server_ts(now: SimTime, skew_us: i64) -> i64 {
    EPOCH_MS + (now as i64 + skew_us).div_euclid(1000)
}
