//! For tests of this and other crates: an engine under a Redis prefix of its own, whose keys
//! are all deleted when it is dropped (even when the test failed).

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

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

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A redis-server of a test's own (AOF, `appendfsync always` unless told otherwise), killed
/// and its directory removed when dropped.
#[derive(Debug)]
pub struct OwnRedis {
    pub port: u16,
    pub dir: PathBuf,
    /// `always`, `everysec` or `no`.
    pub appendfsync: &'static str,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start(dir: PathBuf, port: u16) -> Self {
        Self::start_with(dir, port, "always")
    }

    pub fn start_with(dir: PathBuf, port: u16, appendfsync: &'static str) -> Self {
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut server = Self {
            port,
            dir,
            appendfsync,
            child: None,
        };
        server.spawn();
        server
    }

    /// Starts redis-server on this port and directory (again, after a kill: it replays its AOF).
    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        let url = self.url();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, no final fsync.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
