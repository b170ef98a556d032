//! Calling the engine's scripts. A call that changes what a client is told (a push, an outcome,
//! a cancel, a requeue) goes through [`Engine::write`], which in `replicated` mode sends `WAIT`
//! in the same round trip, on the same connection to the same primary, so the count it answers
//! covers exactly this write; a later, separate `WAIT` could land on a connection opened after a
//! failover and count nothing.

use redis::{ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind, ToRedisArgs, Value};

use super::Engine;
use crate::{Durability, QueueError, Result};

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

fn no_script(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) || e.code() == Some("NOSCRIPT")
}

impl Engine {
    /// Runs a call whose loss on a failover costs nothing a client was told: a fetch (the job
    /// is leased again), a renewal, a read. Loads the script first where a node lacks it (a
    /// replica promoted since the engine connected).
    pub(crate) async fn run<T: FromRedisValue>(&self, call: &Call<'_>) -> Result<T, RedisError> {
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
        let Durability::Replicated { replicas, timeout } = self.config().durability else {
            return Ok(self.run(call).await?);
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
