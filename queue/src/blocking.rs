//! Blocking calls (`XREAD BLOCK`, `XREADGROUP BLOCK`, `BLPOP`) on each of several partitions at
//! once. On a cluster one call cannot wait on keys of several slots, so each partition gets a
//! call, and a connection, of its own. A call is kept across waits: a wait that gives up (or is
//! dropped, as `select!` drops it) leaves the call pending for the next wait, instead of
//! abandoning a connection that Redis still holds blocked, or a reply it already sent.

use std::{future::Future, pin::Pin, time::Duration};

use futures::{FutureExt, StreamExt, stream::FuturesUnordered};
use redis::FromRedisValue;

use crate::{Engine, Result, connection::RedisConn};

type Done<T> = (usize, (RedisConn, Duration), redis::RedisResult<T>);

pub(crate) struct BlockingCalls<T> {
    /// Each partition's connection while no call of it is pending, with the longest block its
    /// response timeout leaves room for.
    idle: Vec<Option<(RedisConn, Duration)>>,
    /// Which partitions have a call pending.
    armed: Vec<bool>,
    /// In a mutex only to be `Sync` (holders are shared across awaits); reached through
    /// `&mut self`, so it is never locked.
    pending: std::sync::Mutex<FuturesUnordered<Pending<T>>>,
}

type Pending<T> = Pin<Box<dyn Future<Output = Done<T>> + Send>>;

impl<T> std::fmt::Debug for BlockingCalls<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingCalls")
            .field("armed", &self.armed)
            .finish()
    }
}

impl<T: FromRedisValue + Send + 'static> BlockingCalls<T> {
    pub fn new(partitions: usize) -> Self {
        Self {
            idle: (0..partitions).map(|_| None).collect(),
            armed: vec![false; partitions],
            pending: std::sync::Mutex::new(FuturesUnordered::new()),
        }
    }

    fn pending_mut(&mut self) -> &mut FuturesUnordered<Pending<T>> {
        self.pending.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `block` for news from any partition: every partition without a call
    /// pending gets the one `cmd` builds (given the time left to block), and replies that
    /// `has_news` finds empty (a call that timed out, perhaps long ago, while the caller was
    /// busy elsewhere) are dropped and their partitions asked again, until one has news or the
    /// time is up. Answers the replies with news, by partition; empty when none came in time.
    /// A failed call's error fails the whole wait: the callers read again from what they hold
    /// (a cursor, pending entries), so no other reply is lost with it.
    pub async fn wait(
        &mut self,
        engine: &Engine,
        block: Duration,
        cmd: impl Fn(usize, Duration) -> redis::Cmd,
        has_news: impl Fn(&T) -> bool,
    ) -> Result<Vec<(usize, T)>> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            for p in 0..self.armed.len() {
                if !self.armed[p] {
                    let call = cmd(p, left.max(Duration::from_millis(1)));
                    self.arm(engine, p, block, call).await?;
                }
            }
            let news: Vec<(usize, T)> = self
                .collect(left)
                .await?
                .into_iter()
                .filter(|(_, reply)| has_news(reply))
                .collect();
            if !news.is_empty() {
                return Ok(news);
            }
            if tokio::time::Instant::now() >= deadline {
                return self.settle(block, &has_news).await;
            }
        }
    }

    /// Before answering "nothing": the calls still pending end on the server within the time
    /// they were given, so wait for them. A caller told "nothing" may stop; a call left pending
    /// could still take something for it (a consumer group's entries, a wake-up token) that
    /// nobody would then see.
    async fn settle(
        &mut self,
        block: Duration,
        has_news: &impl Fn(&T) -> bool,
    ) -> Result<Vec<(usize, T)>> {
        let grace = tokio::time::Instant::now() + block + Duration::from_millis(200);
        let mut news = Vec::new();
        while self.armed.iter().any(|armed| *armed) {
            let left = grace.saturating_duration_since(tokio::time::Instant::now());
            let done = self.collect(left).await?;
            if done.is_empty() {
                break;
            }
            news.extend(done.into_iter().filter(|(_, reply)| has_news(reply)));
        }
        Ok(news)
    }

    /// Starts `cmd` on partition `p`'s own connection (opened on first use, with room for a
    /// call blocking up to `block`).
    async fn arm(
        &mut self,
        engine: &Engine,
        p: usize,
        block: Duration,
        cmd: redis::Cmd,
    ) -> Result<()> {
        // A connection opened for shorter blocks would time out a longer one client-side,
        // and lose what the call took (a wake-up token): open one with room for this block.
        let (mut conn, room) = match self.idle[p].take() {
            Some((conn, room)) if room >= block => (conn, room),
            _ => {
                let conn = engine
                    .dedicated_connection(block + Duration::from_secs(2))
                    .await?;
                (conn, block)
            }
        };
        self.pending_mut().push(Box::pin(async move {
            let reply = cmd.query_async(&mut conn).await;
            (p, (conn, room), reply)
        }));
        self.armed[p] = true;
        Ok(())
    }

    /// The replies of the first call to finish within `wait`, and of any others finished by
    /// then.
    async fn collect(&mut self, wait: Duration) -> Result<Vec<(usize, T)>> {
        let pending = self.pending_mut();
        let first = match tokio::time::timeout(wait, pending.next()).await {
            Ok(Some(done)) => done,
            Ok(None) | Err(_) => return Ok(Vec::new()),
        };
        let mut done = vec![first];
        while let Some(Some(more)) = pending.next().now_or_never() {
            done.push(more);
        }
        let mut out = Vec::with_capacity(done.len());
        let mut failed = None;
        for (p, conn, reply) in done {
            self.armed[p] = false;
            self.idle[p] = Some(conn);
            match reply {
                Ok(reply) => out.push((p, reply)),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }
}
