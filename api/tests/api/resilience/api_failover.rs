//! Scenario 7: an API process SIGKILLed while clients are subscribed. Each client reconnects to
//! the other API process and resumes after its last cursor: every event once, none missing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use super::{
    cluster::{Cluster, Options, Scale},
    load::{Client, provision},
};

const SUBSCRIPTION: &str = "subscription($after: String) { jobUpdates(filter: {kinds: [INGEST]}, after: $after) { cursor event job { id } } }";

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Seen {
    cursors: Vec<String>,
    reconnects: u32,
    /// From losing its connection to the next event on another process.
    gap: Option<Duration>,
}

/// Follows `jobUpdates` from `after`, starting on `urls[0]` and moving to the next process
/// whenever the connection ends, until `stop` is set and the stream has gone quiet.
async fn subscriber(
    urls: Vec<String>,
    token: String,
    after: String,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut last = after;
    let mut turn = 0;
    let mut lost_at: Option<Instant> = None;
    loop {
        let url = format!(
            "{}/graphql/ws",
            urls[turn % urls.len()].replacen("http", "ws", 1)
        );
        turn += 1;
        let mut request = url.into_client_request().expect("ws request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let Ok((mut socket, _)) = connect_async(request).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let send = |v: Value| Message::Text(v.to_string().into());
        let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
        let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": SUBSCRIPTION, "variables": { "after": last } } });
        if socket.send(send(init)).await.is_err() || socket.send(send(subscribe)).await.is_err() {
            continue;
        }
        loop {
            let next = tokio::time::timeout(Duration::from_millis(1500), socket.next()).await;
            let message = match next {
                Err(_) if stop.load(Ordering::Relaxed) => return seen,
                Err(_) => continue,
                Ok(Some(Ok(message))) => message,
                Ok(_) => break,
            };
            let Message::Text(text) = message else {
                if matches!(message, Message::Close(_)) {
                    break;
                }
                continue;
            };
            let value: Value = serde_json::from_str(&text).expect("ws json");
            match value["type"].as_str() {
                Some("ping") => {
                    let _ = socket.send(send(json!({ "type": "pong" }))).await;
                }
                Some("next") => {
                    let cursor = value["payload"]["data"]["jobUpdates"]["cursor"]
                        .as_str()
                        .unwrap_or_else(|| panic!("an update without a cursor: {value}"))
                        .to_owned();
                    if let Some(at) = lost_at.take() {
                        seen.gap = Some(seen.gap.unwrap_or_default().max(at.elapsed()));
                    }
                    last = cursor.clone();
                    seen.cursors.push(cursor);
                }
                Some("connection_ack") => {}
                _ => panic!("unexpected message {value}"),
            }
        }
        seen.reconnects += 1;
        lost_at.get_or_insert_with(Instant::now);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_of_a_killed_api_resume_on_another_without_a_gap() {
    let scale = Scale::from_env();
    let subscribers = scale.count("RESILIENCE_SUBSCRIBERS", 20, 200);
    let sensors = 10;
    let mut options = Options::new("api-failover");
    options.apis = 2;
    options.workers = 1;
    let mut cluster = Cluster::start(options).await;
    provision(&cluster, sensors).await;
    let start = cluster
        .admin_ok("{ jobs(first: 1) { eventCursor } }", json!({}))
        .await["jobs"]["eventCursor"]
        .as_str()
        .expect("event cursor")
        .to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let followers: Vec<_> = (0..subscribers)
        .map(|_| {
            tokio::spawn(subscriber(
                cluster.api_urls.clone(),
                cluster.admin.clone(),
                start.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let load_stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(Client::of(&cluster).submit_range(
        0,
        usize::MAX,
        10,
        Duration::from_millis(100),
        sensors,
        load_stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.apis[0].kill9().await;
    tokio::time::sleep(scale.pick(Duration::from_secs(3), Duration::from_secs(20))).await;
    load_stop.store(true, Ordering::Relaxed);
    let submitted = load.await.expect("load");
    super::books::settle(&mut cluster, &submitted.accepted, Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);

    // What the stream holds for ingest jobs after the starting cursor: what each must have seen.
    let expected: Vec<String> = super::books::events_after(&cluster, &start)
        .await
        .expect("the run's events still in the stream")
        .into_iter()
        .filter(|e| e.kind == "ingest")
        .map(|e| e.cursor)
        .collect();
    let mut missing = 0;
    let mut repeated = 0;
    let mut worst_gap = Duration::ZERO;
    let mut reconnected = 0;
    for follower in followers {
        let seen = follower.await.expect("subscriber");
        let mut got = seen.cursors.clone();
        got.dedup();
        repeated += seen.cursors.len() - got.len();
        let unique: std::collections::HashSet<&String> = got.iter().collect();
        missing += expected.iter().filter(|c| !unique.contains(c)).count();
        assert!(
            got.windows(2)
                .all(|w| stream_order(&w[0]) < stream_order(&w[1])),
            "a subscriber saw events out of order"
        );
        worst_gap = worst_gap.max(seen.gap.unwrap_or_default());
        if seen.reconnects > 0 {
            reconnected += 1;
        }
    }
    println!(
        "scenario 7, API SIGKILL under {subscribers} subscribers: {} jobs, {} events each; {reconnected} reconnected to the other process; \
         missing {missing}, repeated {repeated}; longest wait for the next event after the kill {worst_gap:.1?}",
        submitted.accepted.len(),
        expected.len(),
    );
    assert_eq!(
        reconnected, subscribers,
        "every subscriber was on the killed process"
    );
    assert_eq!(missing, 0);
    assert_eq!(repeated, 0);
    cluster.stop_workers().await;
}

/// A stream id as (ms, seq), to compare in stream order.
fn stream_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}
