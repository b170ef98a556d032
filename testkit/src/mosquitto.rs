//! A Mosquitto of a test's own on a free loopback port: devices and the bridge log in with
//! their own passwords, an ACL lets each device publish only under its own id, and sessions
//! persist in the test's directory, so a restart (SIGTERM, then start again on the same port)
//! keeps the messages a client has not acknowledged yet. Killed and removed when dropped.

use std::{
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The bridge's login on a test broker.
pub const BRIDGE_USER: &str = "bridge";
pub const BRIDGE_PASSWORD: &str = "bridge-secret";

#[derive(Debug)]
pub struct OwnMosquitto {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnMosquitto {
    /// Starts a broker whose topics begin with `prefix`, with a login for the bridge and one
    /// per device (user name: the device's id; password: `device-<id>`).
    pub fn start(tag: &str, prefix: &str, devices: &[i64]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("steadfast-mosquitto-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("broker dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let passwd = dir.join("passwd");
        let mut users = vec![(BRIDGE_USER.to_owned(), BRIDGE_PASSWORD.to_owned())];
        users.extend(
            devices
                .iter()
                .map(|id| (id.to_string(), device_password(*id))),
        );
        for (i, (user, password)) in users.iter().enumerate() {
            let mut cmd = Command::new("mosquitto_passwd");
            if i == 0 {
                cmd.arg("-c");
            }
            let status = cmd
                .arg("-b")
                .arg(&passwd)
                .args([user, password])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("mosquitto_passwd must be installed");
            assert!(status.success(), "mosquitto_passwd failed");
        }
        let acl = format!(
            "user {BRIDGE_USER}\n\
             topic read {prefix}/devices/+/readings\n\
             topic write {prefix}/devices/+/rejections\n\
             topic write {prefix}/rejections\n\
             pattern write {prefix}/devices/%u/readings\n\
             pattern read {prefix}/devices/%u/rejections\n"
        );
        std::fs::write(dir.join("acl"), acl).expect("acl");
        let conf = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous false\n\
             password_file {passwd}\n\
             acl_file {acl}\n\
             persistence true\n\
             persistence_location {data}/\n\
             max_queued_messages 100000\n\
             log_dest none\n\
             user root\n",
            passwd = passwd.display(),
            acl = dir.join("acl").display(),
            data = dir.display(),
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).expect("conf");
        let mut broker = Self {
            port,
            dir,
            child: None,
        };
        broker.spawn();
        broker
    }

    /// The bridge's `MQTT_URL` for this broker.
    pub fn bridge_url(&self) -> String {
        format!(
            "mqtt://{BRIDGE_USER}:{BRIDGE_PASSWORD}@127.0.0.1:{}",
            self.port
        )
    }

    /// Starts the broker (again): it restores the sessions it saved when it stopped.
    pub fn spawn(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, as a restart does: the broker saves its sessions and exits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

/// A device's password on a test broker.
pub fn device_password(id: i64) -> String {
    format!("device-{id}")
}

impl Drop for OwnMosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
