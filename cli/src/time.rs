//! Times as a person reads them: in this system's time zone.

use chrono::{DateTime, Local, TimeZone};

fn local(ms: u64) -> Option<DateTime<Local>> {
    Local.timestamp_millis_opt(i64::try_from(ms).ok()?).single()
}

/// `2026-12-02 14:05`, or `?` for a time that is not one.
pub fn date_time(ms: u64) -> String {
    local(ms).map_or_else(|| "?".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}
