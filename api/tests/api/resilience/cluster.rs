//! A deployment of the real binaries, as operators run it: `api` and `workers` processes
//! against a redis-server of the suite's own (AOF on, on a free port) and a fresh PostgreSQL
//! database reached through a proxy the suite can cut. Load goes in through the public API.

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use migration::testing::TestDb;
use queue::{
    Engine,
    testing::{OwnRedis, free_port},
};
use serde_json::{Value, json};
use testkit::{Received, Receiver};
use tokio::process::{Child, Command};

use super::proxy::TcpProxy;
use crate::api::common::{JWT_SECRET, PASSWORD, eventually, http, workers_bin};

/// How big a run is: the short form runs in CI, the long form with `scripts/resilience`
/// (`STEADFAST_RESILIENCE=long`).
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub long: bool,
}

impl Scale {
    pub fn from_env() -> Self {
        Self {
            long: std::env::var("STEADFAST_RESILIENCE").is_ok_and(|v| v == "long"),
        }
    }

    pub fn pick<T>(self, short: T, long: T) -> T {
        if self.long { long } else { short }
    }

    /// `name` from the environment (`STEADFAST_<NAME>`), else the short or long default.
    pub fn count(self, name: &str, short: usize, long: usize) -> usize {
        std::env::var(format!("STEADFAST_{name}"))
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.pick(short, long))
    }
}

/// One process of the deployment, restartable with the same flags.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    bin: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(name: String, bin: PathBuf, args: Vec<String>, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        Self {
            name,
            bin,
            args,
            log,
            child: None,
        }
    }

    pub fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("process log");
        let child = Command::new(&self.bin)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            // The scenarios' webhook receivers listen on loopback.
            .env("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// SIGKILL: no shutdown, leases left to expire.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM; answers how long the process took to exit.
    pub async fn sigterm(&mut self) -> Duration {
        let Some(mut child) = self.child.take() else {
            return Duration::ZERO;
        };
        let started = Instant::now();
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
        started.elapsed()
    }

    /// Fails the test, with the process's last words, if it exited by itself.
    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "{} exited by itself ({status}):\n{}",
                self.name,
                self.log_tail(20)
            );
        }
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// What a cluster starts with.
#[derive(Debug, Clone)]
pub struct Options {
    pub tag: &'static str,
    pub appendfsync: &'static str,
    pub apis: usize,
    pub workers: usize,
    /// Jobs each workers process runs at once per queue.
    pub concurrency: usize,
    /// Flags every workers process gets after the suite's defaults.
    pub worker_flags: Vec<String>,
}

impl Options {
    pub fn new(tag: &'static str) -> Self {
        Self {
            tag,
            appendfsync: "always",
            apis: 1,
            workers: 2,
            concurrency: 16,
            worker_flags: Vec::new(),
        }
    }
}

/// The deployment under test and the suite's own view of it.
pub struct Cluster {
    pub redis: OwnRedis,
    pub db: TestDb,
    pub pg_proxy: TcpProxy,
    /// The suite's own engine on the deployment's prefix, for the books.
    pub engine: Engine,
    pub apis: Vec<Proc>,
    pub api_urls: Vec<String>,
    pub workers: Vec<Proc>,
    worker_args: Vec<String>,
    pub receiver: Receiver,
    /// What earlier receivers on the same address got (see [`Cluster::receiver_up`]).
    received_before: Vec<Received>,
    pub http: reqwest::Client,
    pub admin: String,
    dir: PathBuf,
}

fn upstream_of(url: &str) -> SocketAddr {
    let host = url
        .split_once('@')
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("database url with user@host:port");
    let host = host.replacen("localhost", "127.0.0.1", 1);
    host.parse().expect("database host:port")
}

impl Cluster {
    pub async fn start(options: Options) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("steadfast-resilience-{}-{port}", options.tag));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("suite directory");
        let redis = OwnRedis::start_with(dir.join("redis"), port, options.appendfsync);
        let db = TestDb::migrated_postgres().await;
        let pg_proxy = TcpProxy::start(upstream_of(db.url())).await;
        let database_url = pg_proxy.route(db.url());
        let prefix = format!("r-{}", options.tag);
        let engine = Engine::connect(&redis.url(), queue::testing::config(&prefix))
            .await
            .expect("the suite's engine");

        let mut apis = Vec::new();
        let mut api_urls = Vec::new();
        for i in 0..options.apis {
            let port = free_port();
            let args = vec![
                format!("--addr=127.0.0.1:{port}"),
                format!("--redis-url={}", redis.url()),
                format!("--prefix={prefix}"),
                format!("--database-url={database_url}"),
                format!("--jwt-secret={JWT_SECRET}"),
                "--redis-timeout-ms=1000".into(),
                "--static-dir=/nonexistent".into(),
            ];
            let mut api = Proc::new(
                format!("api-{i}"),
                env!("CARGO_BIN_EXE_api").into(),
                args,
                &dir,
            );
            api.spawn();
            apis.push(api);
            api_urls.push(format!("http://127.0.0.1:{port}"));
        }

        let worker_args = vec![
            format!("--redis-url={}", redis.url()),
            format!("--prefix={prefix}"),
            format!("--database-url={database_url}"),
            format!("--concurrency={}", options.concurrency),
            "--silence-check-secs=3600".into(),
        ]
        .into_iter()
        .chain(options.worker_flags.iter().cloned())
        .collect();
        let http = http();
        let mut cluster = Self {
            redis,
            db,
            pg_proxy,
            engine,
            apis,
            api_urls,
            workers: Vec::new(),
            worker_args,
            receiver: Receiver::start().await,
            received_before: Vec::new(),
            http,
            admin: String::new(),
            dir,
        };
        for _ in 0..options.workers {
            cluster.add_worker();
        }
        for url in cluster.api_urls.clone() {
            cluster.wait_ready(&url).await;
        }
        cluster.admin = cluster.register_admin().await;
        cluster
    }

    pub async fn wait_ready(&self, url: &str) {
        let http = self.http.clone();
        eventually(Duration::from_secs(30), "the api to be ready", || {
            let (http, url) = (http.clone(), url.to_owned());
            async move {
                let status = http
                    .get(format!("{url}/health"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .status();
                status.is_success().then_some(()).ok_or(status.to_string())
            }
        })
        .await;
    }

    async fn register_admin(&self) -> String {
        let data = self
            .gql_ok(
                None,
                "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { accessToken } }",
                json!({ "e": "admin@example.com", "p": PASSWORD }),
            )
            .await;
        data["register"]["accessToken"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    /// A GraphQL operation against the API at `url`; `Err` for a transport failure.
    pub async fn gql_at(
        &self,
        url: &str,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Result<Value, String> {
        let mut request = self
            .http
            .post(format!("{url}/graphql"))
            .timeout(Duration::from_secs(30))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        response.json().await.map_err(|e| e.to_string())
    }

    pub async fn gql_ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self
            .gql_at(&self.api_urls[0], token, query, variables)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert!(
            body.get("errors").is_none_or(Value::is_null),
            "{query} failed: {body}"
        );
        body["data"].clone()
    }

    /// The admin's GraphQL call, failing the test on errors.
    pub async fn admin_ok(&self, query: &str, variables: Value) -> Value {
        let token = self.admin.clone();
        self.gql_ok(Some(&token), query, variables).await
    }

    /// Starts one more workers process (`workers-<n>`); answers its index.
    pub fn add_worker(&mut self) -> usize {
        let i = self.workers.len();
        let mut args = self.worker_args.clone();
        // A stable name per slot, as a supervisor restarting it in place would keep: a
        // restarted recorder takes back the ledger entries its predecessor left.
        args.push(format!("--worker-id=rw-{i}"));
        args.push(format!("--metrics-addr=127.0.0.1:{}", free_port()));
        let mut worker = Proc::new(format!("workers-{i}"), workers_bin(), args, &self.dir);
        worker.spawn();
        self.workers.push(worker);
        i
    }

    /// Restarts `workers-<i>` after it was killed or stopped.
    pub fn restart_worker(&mut self, i: usize) {
        self.workers[i].spawn();
    }

    /// The webhook receiver stops listening: deliveries meet a refused connection.
    pub fn receiver_down(&self) {
        self.receiver.stop();
    }

    /// A receiver listening again on the same address.
    pub async fn receiver_up(&mut self) {
        let addr = self.receiver.addr;
        self.received_before.extend(self.receiver.received());
        // The stopped server's socket closes asynchronously.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.receiver = Receiver::start_at(addr).await;
    }

    /// Every webhook request the receivers got, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        let mut all = self.received_before.clone();
        all.extend(self.receiver.received());
        all
    }

    /// Fails the test if a process the suite did not stop has exited.
    pub fn assert_running(&mut self) {
        for proc in self.apis.iter_mut().chain(self.workers.iter_mut()) {
            proc.assert_running();
        }
    }

    /// Every worker stopped with SIGTERM (the suite's books are read with nothing running).
    pub async fn stop_workers(&mut self) {
        for worker in &mut self.workers {
            worker.sigterm().await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for proc in self.apis.iter().chain(&self.workers) {
                eprintln!("--- last lines of {} ---\n{}", proc.name, proc.log_tail(30));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
