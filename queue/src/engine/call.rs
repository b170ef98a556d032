//! Calling the engine's scripts. A call that changes what a client is told (a push, an outcome,
//! a cancel, a requeue) goes through [`Engine::write`], which in `replicated` mode sends `WAIT`
//! in the same round trip, on the same connection to the same primary, so the count it answers
//! covers exactly this write; a later, separate `WAIT` could land on a connection opened after a
//! failover and count nothing.

use std::time::{Duration, Instant};

use redis::{ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind, ToRedisArgs, Value};

use super::Engine;
use crate::{Durability, QueueError, Result, keys::Partition};

/// One script call: its keys (the first one routes it on a cluster) and arguments.
pub(crate) struct Call<'s> {
    script: &'s redis::Script,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl<'s> Call<'s> {
    pub fn new(script: &'s redis::Script) -> Self {
        Self {
            script,
            keys: Vec::with_capacity(1),
            args: Vec::new(),
        }
    }

    pub fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    fn evalsha(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash()).arg(self.keys.len());
        for key in &self.keys {
            cmd.arg(key.as_slice());
        }
        for arg in &self.args {
            cmd.arg(arg.as_slice());
        }
        cmd
    }

    fn routing_key(&self) -> &str {
        self.keys
            .first()
            .and_then(|k| std::str::from_utf8(k).ok())
            .unwrap_or_default()
    }
}

/// Sends the write with its `WAIT`; answers the script's reply and the `WAIT` count, the
/// script's own error (a `NOSCRIPT` included) as an error.
async fn write_and_wait(
    conn: &mut crate::connection::RedisConn,
    call: &Call<'_>,
    pipe: &Pipeline,
) -> Result<(Value, Value)> {
    let mut values = conn
        .pipeline_at(call.routing_key(), pipe)
        .await?
        .into_iter();
    let (Some(reply), Some(acked)) = (values.next(), values.next()) else {
        return Err(super::protocol("WAIT", "a pipeline of two answered fewer"));
    };
    Ok((reply.extract_error()?, acked))
}

/// The script refused to run: its partition's slot is being moved (`steadfast fence`).
pub(crate) fn fenced(e: &RedisError) -> bool {
    e.code() == Some("FENCED")
}

/// Calls `attempt` again while it answers `FENCED`, backing off up to 250 ms between tries,
/// until `wait` has passed; then answers the last `FENCED` (retryable) to the caller.
async fn while_fenced<T, E, F, Fut>(wait: Duration, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: AsFenced,
{
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(5);
    loop {
        match attempt().await {
            Err(e) if e.is_fenced() && Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

trait AsFenced {
    fn is_fenced(&self) -> bool;
}
impl AsFenced for RedisError {
    fn is_fenced(&self) -> bool {
        fenced(self)
    }
}
impl AsFenced for QueueError {
    fn is_fenced(&self) -> bool {
        matches!(self, QueueError::Redis(e) if fenced(e))
    }
}

fn no_script(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) || e.code() == Some("NOSCRIPT")
}

impl Engine {
    /// A call of one of the engine's scripts on partition `p`: its job-event stream and its
    /// fence declared, its hash tag as the prefix.
    pub(crate) fn call_in<'s>(&self, script: &'s redis::Script, p: Partition) -> Call<'s> {
        let mut call = Call::new(script);
        call.key(self.keys().job_events(p))
            .key(self.keys().fence(p))
            .arg(self.keys().home(p));
        call
    }

    /// Runs a call whose loss on a failover costs nothing a client was told: a fetch (the job
    /// is leased again), a renewal, a read. Loads the script first where a node lacks it (a
    /// replica promoted since the engine connected).
    pub(crate) async fn run<T: FromRedisValue>(&self, call: &Call<'_>) -> Result<T, RedisError> {
        while_fenced(self.config().fence_wait, || self.run_once(call)).await
    }

    /// [`Engine::run`] without waiting for a fenced partition: `FENCED` is answered at once.
    pub(crate) async fn run_once<T: FromRedisValue>(
        &self,
        call: &Call<'_>,
    ) -> Result<T, RedisError> {
        let mut conn = self.conn();
        let cmd = call.evalsha();
        match cmd.query_async(&mut conn).await {
            Err(e) if no_script(&e) => {
                call.script.load_async(&mut conn).await?;
                cmd.query_async(&mut conn).await
            }
            other => other,
        }
    }

    /// Runs a state change that a client will be told about. `local`: as [`Engine::run`].
    /// `replicated`: with `WAIT` behind it; fewer replicas than required in time is
    /// [`QueueError::NotReplicated`] (the write stands on the primary, the caller may retry).
    pub(crate) async fn write<T: FromRedisValue>(&self, call: &Call<'_>) -> Result<T> {
        while_fenced(self.config().fence_wait, || self.write_once(call)).await
    }

    async fn write_once<T: FromRedisValue>(&self, call: &Call<'_>) -> Result<T> {
        let Durability::Replicated { replicas, timeout } = self.config().durability else {
            return Ok(self.run_once(call).await?);
        };
        let mut pipe = Pipeline::new();
        pipe.add_command(call.evalsha())
            .cmd("WAIT")
            .arg(replicas)
            .arg(timeout.as_millis() as u64);
        let mut conn = self.conn();
        let (reply, acked) = match write_and_wait(&mut conn, call, &pipe).await {
            Err(QueueError::Redis(e)) if no_script(&e) => {
                call.script.load_async(&mut conn).await?;
                write_and_wait(&mut conn, call, &pipe).await?
            }
            other => other?,
        };
        let acked = i64::from_redis_value(acked.extract_error()?)
            .map_err(|e| super::protocol("WAIT", &e.to_string()))?;
        if acked < i64::from(replicas) {
            return Err(QueueError::NotReplicated {
                wanted: replicas,
                acknowledged: acked.max(0) as u32,
            });
        }
        T::from_redis_value(reply).map_err(|e| QueueError::Redis(e.into()))
    }
}
