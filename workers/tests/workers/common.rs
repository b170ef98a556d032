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

/// A plain HTTP/1.0 GET: the body of the answer.
pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    answer
}
