//! For tests of this and other crates: an engine under a Redis prefix of its own, whose keys
//! are all deleted when it is dropped (even when the test failed).

use crate::{Engine, EngineConfig};

#[derive(Debug)]
pub struct TestPrefix {
    pub engine: Engine,
    pub prefix: String,
    pub url: String,
}

/// `REDIS_URL`, or the local Redis.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

impl TestPrefix {
    /// Connects to `REDIS_URL` (default local) under `test-<tag>-<ulid>`.
    pub async fn new(tag: &str) -> Self {
        Self::at(&redis_url(), tag, |_| {}).await
    }

    /// Connects to `url` under `test-<tag>-<ulid>`, with `tweak` applied to the configuration.
    pub async fn at(url: &str, tag: &str, tweak: impl FnOnce(&mut EngineConfig)) -> Self {
        let prefix = format!(
            "test-{tag}-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let mut config = EngineConfig::with_prefix(&prefix);
        config.response_timeout = std::time::Duration::from_secs(3);
        tweak(&mut config);
        let engine = Engine::connect(url, config)
            .await
            .expect("redis must be reachable for tests");
        Self {
            engine,
            prefix,
            url: url.to_owned(),
        }
    }
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        // Drop cannot await: a thread with a runtime of its own deletes the prefix's keys.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(engine) = Engine::connect(&url, EngineConfig::with_prefix(&prefix)).await
                {
                    let _ = engine.destroy_all_data().await;
                }
            });
        })
        .join();
    }
}
