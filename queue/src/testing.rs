//! For tests of this and other crates: an engine under a Redis prefix of its own, whose keys
//! are all deleted when it is dropped (even when the test failed).

use crate::{Engine, EngineConfig};

#[derive(Debug)]
pub struct TestPrefix {
    pub engine: Engine,
    pub prefix: String,
    url: String,
}

impl TestPrefix {
    /// Connects to `REDIS_URL` (default local) under `test-<tag>-<ulid>`.
    pub async fn new(tag: &str) -> Self {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!(
            "test-{tag}-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let engine = Engine::connect(&url, EngineConfig::with_prefix(&prefix))
            .await
            .expect("redis must be reachable for tests");
        Self {
            engine,
            prefix,
            url,
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
