//! Fixtures for tests of this and other crates: sensors, rules and channels.

use chrono::Utc;
use entities::{
    channels, rule_channels, rules, sensors,
    states::{ChannelKind, RuleKind},
};
use sea_orm::{ActiveModelTrait, DatabaseConnection, Set};

pub async fn sensor(db: &DatabaseConnection, key: &str) -> sensors::Model {
    sensors::ActiveModel {
        key: Set(key.into()),
        name: Set(key.into()),
        unit: Set("°C".into()),
        device_id: Set(None),
        eval_cursor: Set(0),
        last_reading_at: Set(None),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("sensor")
}

/// A rule of `kind` (`ABOVE`, `BELOW`, `RATE_OF_CHANGE`) for `n` consecutive readings.
pub async fn rule(
    db: &DatabaseConnection,
    sensor: i64,
    kind: &str,
    threshold: f64,
    clear: f64,
    n: i32,
    throttle_seconds: i32,
) -> rules::Model {
    rules::ActiveModel {
        sensor_id: Set(sensor),
        kind: Set(kind.into()),
        threshold: Set(Some(threshold)),
        clear_threshold: Set(Some(clear)),
        for_readings: Set(n),
        silence_seconds: Set(None),
        throttle_seconds: Set(throttle_seconds),
        enabled: Set(true),
        in_breach: Set(false),
        evaluated_to: Set(0),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("rule")
}

/// A `SILENCE` rule: a breach once `sensor` has received nothing for `seconds`.
pub async fn silence_rule(db: &DatabaseConnection, sensor: i64, seconds: i32) -> rules::Model {
    let mut active: rules::ActiveModel =
        rule(db, sensor, RuleKind::Silence.as_str(), 0.0, 0.0, 1, 300)
            .await
            .into();
    active.threshold = Set(None);
    active.clear_threshold = Set(None);
    active.silence_seconds = Set(Some(seconds));
    active.update(db).await.expect("silence rule")
}

/// A channel (`WEBHOOK` or `IN_APP`) that `rule` notifies.
pub async fn channel_for(
    db: &DatabaseConnection,
    rule: i64,
    name: &str,
    kind: &str,
) -> channels::Model {
    let channel = channels::ActiveModel {
        name: Set(name.into()),
        kind: Set(kind.into()),
        url: Set(None),
        secret: Set(None),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("channel");
    rule_channels::ActiveModel {
        rule_id: Set(rule),
        channel_id: Set(channel.id),
    }
    .insert(db)
    .await
    .expect("rule channel");
    channel
}

/// The secret of channels made by [`webhook_for`].
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";

/// A webhook channel to `url`, signed with [`WEBHOOK_SECRET`], that `rule` notifies.
pub async fn webhook_for(db: &DatabaseConnection, rule: i64, url: &str) -> channels::Model {
    let channel = channel_for(db, rule, "webhook", ChannelKind::Webhook.as_str()).await;
    let mut active: channels::ActiveModel = channel.into();
    active.url = Set(Some(url.into()));
    active.secret = Set(Some(WEBHOOK_SECRET.into()));
    active.update(db).await.expect("webhook channel")
}

pub use receiver::{Received, Receiver, Reply};

/// A real HTTP receiver for webhooks on a local port, answering as a test scripts it.
mod receiver {
    use std::{
        collections::VecDeque,
        net::SocketAddr,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use axum::{
        Router,
        body::Bytes,
        extract::State,
        http::{HeaderMap, StatusCode},
        response::{IntoResponse, Response},
        routing::post,
    };

    /// One request as it arrived.
    #[derive(Debug, Clone)]
    pub struct Received {
        /// When it arrived.
        pub at: std::time::Instant,
        pub idempotency_key: String,
        pub signature: String,
        pub body: Bytes,
    }

    impl Received {
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).expect("webhook body is JSON")
        }
    }

    /// How the receiver answers one request; once the script runs out it answers 200.
    #[derive(Debug, Clone)]
    pub enum Reply {
        Status(u16),
        /// 429 with `Retry-After: <seconds>`.
        TooManyRequests(u64),
        /// Answers 200 only after this long (longer than the sender's timeout: a timeout).
        Stall(Duration),
    }

    #[derive(Debug, Default)]
    struct Shared {
        received: Vec<Received>,
        script: VecDeque<Reply>,
    }

    #[derive(Debug)]
    pub struct Receiver {
        pub addr: SocketAddr,
        shared: Arc<Mutex<Shared>>,
        server: tokio::task::JoinHandle<()>,
    }

    impl Receiver {
        pub async fn start() -> Self {
            Self::start_at("127.0.0.1:0".parse().expect("address")).await
        }

        /// On a given address: a receiver that comes back on the port it was down on.
        pub async fn start_at(addr: SocketAddr) -> Self {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .expect("bind receiver");
            let addr = listener.local_addr().expect("receiver address");
            let shared = Arc::new(Mutex::new(Shared::default()));
            let app = Router::new()
                .route("/hook", post(receive))
                .with_state(shared.clone());
            let server = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Self {
                addr,
                shared,
                server,
            }
        }

        pub fn url(&self) -> String {
            format!("http://{}/hook", self.addr)
        }

        /// The next requests are answered so, in order.
        pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
            self.lock().script.extend(replies);
        }

        pub fn received(&self) -> Vec<Received> {
            self.lock().received.clone()
        }

        /// Stops listening: connections to its port are refused until a receiver starts there
        /// again.
        pub fn stop(&self) {
            self.server.abort();
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
            self.shared.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    async fn receive(
        State(shared): State<Arc<Mutex<Shared>>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let reply = {
            let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
            shared.received.push(Received {
                at: std::time::Instant::now(),
                idempotency_key: header("idempotency-key"),
                signature: header("x-steadfast-signature"),
                body,
            });
            shared.script.pop_front()
        };
        match reply {
            None => StatusCode::OK.into_response(),
            Some(Reply::Status(code)) => StatusCode::from_u16(code)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response(),
            Some(Reply::TooManyRequests(secs)) => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
            )
                .into_response(),
            Some(Reply::Stall(after)) => {
                tokio::time::sleep(after).await;
                StatusCode::OK.into_response()
            }
        }
    }
}

/// Leases and completes (succeeded, result `{"ok":true}`) the jobs of `queues` in rounds of up
/// to `per_round` each, until all are empty; returns how many. The steps of the same workflow
/// runs end close together in the event stream, as they do in a live pipeline.
pub async fn complete_interleaved(
    engine: &queue::Engine,
    queues: &[&str],
    per_round: usize,
) -> usize {
    let mut done = 0;
    loop {
        let mut round = 0;
        for queue in queues {
            let fetched = engine
                .fetch(&queue::FetchRequest {
                    queue,
                    worker_id: "w-test",
                    max_jobs: per_round,
                    lease: std::time::Duration::from_secs(60),
                    backoff_base: std::time::Duration::ZERO,
                    backoff_cap: std::time::Duration::ZERO,
                })
                .await
                .expect("fetch");
            let outcomes: Vec<_> = fetched
                .jobs
                .iter()
                .map(|j| {
                    let result = Some(r#"{"ok":true}"#.to_owned());
                    (
                        j.id.clone(),
                        j.token.clone(),
                        queue::Outcome::Succeeded { result },
                    )
                })
                .collect();
            round += outcomes.len();
            engine.complete(&outcomes).await.expect("complete");
        }
        if round == 0 {
            return done;
        }
        done += round;
    }
}
