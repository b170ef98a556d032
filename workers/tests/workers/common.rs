#![allow(dead_code)]

pub use testkit::{Sql, TestApp, eventually};

/// `n` readings for `sensor`, one second apart from `start_seq`, valued by `value(seq)`.
pub fn readings(
    sensor: &str,
    seqs: std::ops::Range<i64>,
    value: impl Fn(i64) -> f64,
) -> serde_json::Value {
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-21T08:00:00Z").expect("time");
    let readings: Vec<_> = seqs
        .map(|seq| {
            serde_json::json!({
                "sensor": sensor,
                "ts": (t0 + chrono::Duration::seconds(seq)).to_rfc3339(),
                "value": value(seq),
                "seq": seq,
            })
        })
        .collect();
    serde_json::json!({ "readings": readings })
}
