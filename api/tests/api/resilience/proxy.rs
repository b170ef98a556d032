//! A TCP proxy of the test's own in front of PostgreSQL, so the suite can make the database
//! unreachable without touching the machine's server: `cut` closes every connection through it
//! and refuses new ones (the port stops listening), `restore` listens again on the same port.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

#[derive(Debug)]
pub struct TcpProxy {
    pub port: u16,
    upstream: SocketAddr,
    /// `true` while open; every forwarded connection watches it and ends when it turns false.
    open: Arc<watch::Sender<bool>>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = Self {
            port,
            upstream,
            open: Arc::new(watch::Sender::new(true)),
            acceptor: Mutex::new(None),
        };
        proxy.accept_on(listener);
        proxy
    }

    fn accept_on(&self, listener: TcpListener) {
        let (upstream, open) = (self.upstream, self.open.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut closed = open.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    // Without it Nagle holds each 8 KiB piece of a large statement until the
                    // previous one is acknowledged, and the server delays that acknowledgement:
                    // the ledger bench through such a proxy recorded 1,171 events/s, not 14,998.
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = closed.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        *self.acceptor.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// The database becomes unreachable: open connections are closed, new ones refused.
    pub fn cut(&self) {
        if let Some(task) = self
            .acceptor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
        self.open.send_replace(false);
    }

    /// Listening again on the same port.
    pub async fn restore(&self) {
        self.open.send_replace(true);
        let listener = loop {
            // The aborted acceptor's socket closes asynchronously; the port frees within moments.
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        self.accept_on(listener);
    }

    /// `url` with its host and port replaced by this proxy's.
    pub fn route(&self, url: &str) -> String {
        url.replacen(
            &format!("@{}", self.upstream),
            &format!("@127.0.0.1:{}", self.port),
            1,
        )
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
