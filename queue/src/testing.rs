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

/// `REDIS_PARTITIONS` (as the binaries read it), or 1: the suite runs as well on a deployment
/// split into partitions, and the processes tests start inherit the same setting.
pub fn partitions() -> u16 {
    std::env::var("REDIS_PARTITIONS")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(1)
}

/// The engine settings a test of `prefix` connects with: the defaults, split into
/// [`partitions`] partitions.
pub fn config(prefix: impl Into<String>) -> EngineConfig {
    EngineConfig {
        partitions: partitions(),
        ..EngineConfig::with_prefix(prefix)
    }
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
        let mut config = config(&prefix);
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
        let partitions = self.engine.partitions();
        // Drop cannot await: a thread with a runtime of its own deletes the prefix's keys.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let config = EngineConfig {
                    partitions,
                    ..EngineConfig::with_prefix(&prefix)
                };
                if let Ok(engine) = Engine::connect(&url, config).await {
                    let _ = engine.destroy_all_data().await;
                }
            });
        })
        .join();
    }
}

/// The keys named `<tag>:<pattern>` (a `KEYS` pattern) in every partition of `engine`'s
/// deployment: for tests that look at keys the engine routes by partition.
pub fn keys_in_every_partition(engine: &Engine, url: &str, pattern: &str) -> Vec<String> {
    let mut conn = InspectConn::open(url);
    let mut found = Vec::new();
    for tag in engine.partition_tags() {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{tag}:{pattern}"))
            .query(&mut conn)
            .expect("keys");
        found.extend(keys);
    }
    found
}

/// A blocking connection for tests that look at keys directly, to one node or to a cluster
/// (whichever the URL names, as the engine reads it).
#[allow(missing_debug_implementations)]
pub enum InspectConn {
    Node(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl InspectConn {
    pub fn open(url: &str) -> Self {
        match crate::RedisTopology::parse(url).expect("a redis url") {
            crate::RedisTopology::Node(url) => Self::Node(
                redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection())
                    .expect("redis connection"),
            ),
            crate::RedisTopology::Sentinel {
                sentinels,
                service,
                node,
            } => {
                let info = crate::connection::sentinel_node_info(&node).expect("node url");
                Self::Node(
                    redis::sentinel::SentinelClient::build(
                        sentinels,
                        service,
                        Some(info),
                        redis::sentinel::SentinelServerType::Master,
                    )
                    .and_then(|mut c| c.get_connection())
                    .expect("the primary the sentinels name"),
                )
            }
            crate::RedisTopology::Cluster(seeds) => Self::Cluster(Box::new(
                redis::cluster::ClusterClient::new(seeds)
                    .and_then(|c| c.get_connection())
                    .expect("cluster connection"),
            )),
        }
    }
}

impl redis::ConnectionLike for InspectConn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            Self::Node(c) => c.req_command(cmd),
            Self::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }

    fn supports_pipelining(&self) -> bool {
        match self {
            Self::Node(c) => c.supports_pipelining(),
            Self::Cluster(c) => c.supports_pipelining(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Self::Node(c) => c.check_connection(),
            Self::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Self::Node(c) => c.is_open(),
            Self::Cluster(c) => c.is_open(),
        }
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
        wait_for_ping(self.port);
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

/// A Redis Cluster of a test's own on loopback: `primaries` primaries with `replicas` replicas
/// each, every node a `redis-server --cluster-enabled yes` in its own directory, joined by
/// `redis-cli --cluster create`. Every node is killed and the directory removed when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    pub dir: PathBuf,
    pub ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
}

impl RedisCluster {
    /// Starts the nodes and waits until the cluster serves every slot.
    pub fn start(dir: PathBuf, primaries: usize, replicas: usize) -> Self {
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let ports: Vec<u16> = (0..primaries * (1 + replicas))
            .map(|_| free_cluster_port())
            .collect();
        let mut cluster = Self {
            dir,
            ports: ports.clone(),
            nodes: Vec::new(),
        };
        for port in &ports {
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                // Short, so a killed primary's replica takes over within about a second.
                .args(["--cluster-node-timeout", "500"])
                .args(["--appendonly", "no", "--save", ""])
                // Replicas sync at once, not after the default 5 s wait for more of them.
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--maxmemory-policy", "noeviction"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server must be installed");
            cluster.nodes.push(Some(child));
        }
        for port in &ports {
            wait_for_ping(*port);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_until_ok(Duration::from_secs(20));
        cluster
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The port of the primary that serves `key`'s slot now, as a live node sees it; none
    /// while that primary is suspected down and no replica has taken over yet.
    pub fn primary_for(&self, key: &str) -> Option<u16> {
        let mut conn = self.live_connection();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .ok()?;
        self.nodes_seen()
            .into_iter()
            .find(|n| {
                n.primary
                    && !n.failing
                    && n.slots.iter().any(|(lo, hi)| (*lo..=*hi).contains(&slot))
            })
            .map(|n| n.port)
    }

    /// The port of the primary serving `slot` now.
    pub fn primary_of_slot(&self, slot: u16) -> Option<u16> {
        self.nodes_seen()
            .into_iter()
            .find(|n| n.primary && n.slots.iter().any(|(lo, hi)| (*lo..=*hi).contains(&slot)))
            .map(|n| n.port)
    }

    /// The ports of the primaries.
    pub fn primaries(&self) -> Vec<u16> {
        self.nodes_seen()
            .into_iter()
            .filter(|n| n.primary && !n.failing)
            .map(|n| n.port)
            .collect()
    }

    /// Moves slots from the primary serving `slot` to the primary on `to` with
    /// `redis-cli --cluster reshard`, as an operator would: that primary's slots from its
    /// lowest through `slot` (redis-cli takes a source's slots lowest first). Answers how many
    /// slots moved.
    pub fn reshard_through(&self, slot: u16, to: u16) -> usize {
        let nodes = self.nodes_seen();
        let from = nodes
            .iter()
            .find(|n| n.primary && n.slots.iter().any(|(lo, hi)| (*lo..=*hi).contains(&slot)))
            .expect("a primary serves the slot");
        let target = nodes
            .iter()
            .find(|n| n.port == to)
            .expect("the target node");
        let count: usize = from
            .slots
            .iter()
            .map(|(lo, hi)| {
                usize::from((*hi).min(slot).saturating_sub(*lo)) + usize::from(*lo <= slot)
            })
            .sum();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{}", from.port))
            .args(["--cluster-from", &from.id, "--cluster-to", &target.id])
            .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster reshard failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        count
    }

    /// The port of a replica of the primary on `primary`, as a live node sees it.
    pub fn replica_of(&self, primary: u16) -> Option<u16> {
        let nodes = self.nodes_seen();
        let id = &nodes.iter().find(|n| n.port == primary)?.id;
        nodes
            .iter()
            .find(|n| n.primary_id.as_deref() == Some(id.as_str()))
            .map(|n| n.port)
    }

    /// `CLUSTER NODES` of a live node, one entry per node.
    fn nodes_seen(&self) -> Vec<NodeSeen> {
        let mut conn = self.live_connection();
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut conn)
            .unwrap_or_default();
        text.lines().filter_map(NodeSeen::parse).collect()
    }

    /// SIGSTOP (`pause: true`) or SIGCONT one node: a stopped replica copies nothing.
    pub fn pause(&self, port: u16, pause: bool) {
        signal_node(&self.ports, &self.nodes, port, pause);
    }

    /// SIGKILL one node: no shutdown, no hand-over.
    pub fn kill(&mut self, port: u16) {
        kill_node(&self.ports, &mut self.nodes, port);
    }

    /// Waits until every live node reports `cluster_state:ok` and every live replica has
    /// synced with its primary (a replica that never synced cannot take over).
    pub fn wait_until_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let all_ok = self.live_ports().iter().all(|port| {
                let Ok(mut conn) = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    .and_then(|c| c.get_connection())
                else {
                    return false;
                };
                let cluster_ok = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query::<String>(&mut conn)
                    .is_ok_and(|info| info.contains("cluster_state:ok"));
                let synced = redis::cmd("INFO")
                    .arg("replication")
                    .query::<String>(&mut conn)
                    .is_ok_and(|info| {
                        info.contains("role:master") || info.contains("master_link_status:up")
                    });
                cluster_ok && synced
            });
            if all_ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn live_ports(&self) -> Vec<u16> {
        self.ports
            .iter()
            .zip(&self.nodes)
            .filter(|(_, n)| n.is_some())
            .map(|(p, _)| *p)
            .collect()
    }

    fn live_connection(&self) -> redis::Connection {
        self.live_ports()
            .iter()
            .find_map(|port| {
                redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    .and_then(|c| c.get_connection())
                    .ok()
            })
            .expect("a live node")
    }
}

/// One line of `CLUSTER NODES`: `id host:port@bus flags primary-id ... slot-ranges`.
struct NodeSeen {
    id: String,
    port: u16,
    primary: bool,
    /// Flagged `fail` or `fail?`.
    failing: bool,
    /// The primary it replicates, for a replica.
    primary_id: Option<String>,
    slots: Vec<(u16, u16)>,
}

impl NodeSeen {
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = fields
            .get(1)?
            .split('@')
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        let flags = fields.get(2)?;
        let slots = fields
            .iter()
            .skip(8)
            .filter_map(|range| match range.split_once('-') {
                Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
                None => range.parse().ok().map(|one| (one, one)),
            })
            .collect();
        Some(Self {
            id: fields.first()?.to_string(),
            port,
            primary: flags.contains("master"),
            failing: flags.contains("fail"),
            primary_id: fields.get(3).filter(|m| **m != "-").map(|m| m.to_string()),
            slots,
        })
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGSTOP or SIGCONT the process serving `port` among `nodes` (in `ports`' order).
fn signal_node(ports: &[u16], nodes: &[Option<Child>], port: u16, pause: bool) {
    if let Some(child) = ports
        .iter()
        .position(|p| *p == port)
        .and_then(|i| nodes[i].as_ref())
    {
        let _ = Command::new("kill")
            .arg(if pause { "-STOP" } else { "-CONT" })
            .arg(child.id().to_string())
            .status();
    }
}

/// SIGKILL the process serving `port` among `nodes`; it is not restarted.
fn kill_node(ports: &[u16], nodes: &mut [Option<Child>], port: u16) {
    if let Some(i) = ports.iter().position(|p| *p == port)
        && let Some(mut child) = nodes[i].take()
    {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A free loopback port whose cluster-bus twin (port + 10000) is free too, both below 32768:
/// out of the kernel's range for outgoing connections, so client sockets cannot take them.
fn free_cluster_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Each process starts from a different place, so parallel tests rarely race for a port.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 250) as u16 * 40;
    loop {
        let port = 10_000 + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}

fn wait_for_ping(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} did not start");
}

/// A primary, one replica and three sentinels watching them (quorum 2, a primary is down
/// after 500 ms), each a process of the test's own on loopback; all killed and the directory
/// removed when dropped.
#[derive(Debug)]
pub struct RedisSentinels {
    pub dir: PathBuf,
    pub service: String,
    /// Primary first, then the replica.
    pub data_ports: Vec<u16>,
    pub sentinel_ports: Vec<u16>,
    data: Vec<Option<Child>>,
    sentinels: Vec<Child>,
}

impl RedisSentinels {
    pub fn start(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        let service = "steadfast".to_owned();
        let data_ports = vec![free_port(), free_port()];
        let sentinel_ports = vec![free_port(), free_port(), free_port()];
        let mut set = Self {
            dir,
            service,
            data_ports: data_ports.clone(),
            sentinel_ports: sentinel_ports.clone(),
            data: Vec::new(),
            sentinels: Vec::new(),
        };
        for (i, port) in data_ports.iter().enumerate() {
            let node_dir = set.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--appendonly", "no", "--save", ""])
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--maxmemory-policy", "noeviction"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null());
            if i > 0 {
                cmd.args(["--replicaof", "127.0.0.1", &data_ports[0].to_string()]);
            }
            set.data
                .push(Some(cmd.spawn().expect("redis-server must be installed")));
            wait_for_ping(*port);
        }
        set.wait_for_replica();
        for port in &sentinel_ports {
            let conf = set.dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {svc} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {svc} 500\n\
                     sentinel failover-timeout {svc} 2000\n\
                     sentinel parallel-syncs {svc} 1\n",
                    dir = set.dir.display(),
                    svc = set.service,
                    primary = data_ports[0],
                ),
            )
            .expect("sentinel config");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server must be installed");
            set.sentinels.push(child);
            wait_for_ping(*port);
        }
        set.wait_for_sentinels_to_agree(Duration::from_secs(20));
        set
    }

    /// `redis+sentinel://` naming every sentinel and the service.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), self.service)
    }

    /// The port of the primary the sentinels name now.
    pub fn primary(&self) -> Option<u16> {
        self.sentinel_ports.iter().find_map(|port| {
            let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .and_then(|c| c.get_connection())
                .ok()?;
            let (_, primary): (String, u16) = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.service)
                .query(&mut conn)
                .ok()?;
            Some(primary)
        })
    }

    /// The data node that is not `primary`.
    pub fn other_than(&self, primary: u16) -> u16 {
        self.data_ports
            .iter()
            .copied()
            .find(|p| *p != primary)
            .expect("two data nodes")
    }

    /// SIGSTOP (`pause: true`) or SIGCONT one data node.
    pub fn pause(&self, port: u16, pause: bool) {
        signal_node(&self.data_ports, &self.data, port, pause);
    }

    /// SIGKILL one data node.
    pub fn kill(&mut self, port: u16) {
        kill_node(&self.data_ports, &mut self.data, port);
    }

    fn wait_for_replica(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = format!("redis://127.0.0.1:{}", self.data_ports[1]);
        while Instant::now() < deadline {
            let synced = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| {
                    redis::cmd("INFO")
                        .arg("replication")
                        .query::<String>(&mut c)
                })
                .is_ok_and(|info| info.contains("master_link_status:up"));
            if synced {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the replica did not sync");
    }

    /// Until every sentinel knows the replica and the two other sentinels: only then can they
    /// agree that the primary is down and elect one of them to fail over.
    fn wait_for_sentinels_to_agree(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ready = self.sentinel_ports.iter().all(|port| {
                let Ok(mut conn) = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    .and_then(|c| c.get_connection())
                else {
                    return false;
                };
                let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("replicas")
                    .arg(&self.service)
                    .query(&mut conn)
                    .unwrap_or_default();
                let peers: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("sentinels")
                    .arg(&self.service)
                    .query(&mut conn)
                    .unwrap_or_default();
                replicas.len() == 1 && peers.len() == self.sentinel_ports.len() - 1
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinels did not find each other"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        for mut child in self.sentinels.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for mut child in self.data.iter_mut().filter_map(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
