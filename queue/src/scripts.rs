//! The engine's Lua scripts. Each is one atomic transition that also appends its event.
//! `redis::Script` calls them by SHA and reloads them on `NOSCRIPT`, so they survive a
//! Redis restart or failover.

use redis::Script;

macro_rules! engine_script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        ))
    };
}

#[derive(Debug)]
pub(crate) struct Scripts {
    pub push: Script,
    pub fetch: Script,
    pub complete: Script,
    pub renew: Script,
    pub cancel: Script,
    pub drain: Script,
    pub requeue: Script,
    pub discard: Script,
    pub cleanup: Script,
    pub trim: Script,
    pub publish: Script,
    pub progress: Script,
    pub limits: Script,
    /// Stand-alone: it touches no job and appends no event.
    pub breaker: Script,
    /// Stand-alone, like the breaker.
    pub rate_limit: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            push: engine_script!("push.lua"),
            fetch: engine_script!("fetch.lua"),
            complete: engine_script!("complete.lua"),
            renew: engine_script!("renew.lua"),
            cancel: engine_script!("cancel.lua"),
            drain: engine_script!("drain.lua"),
            requeue: engine_script!("requeue.lua"),
            discard: engine_script!("discard.lua"),
            cleanup: engine_script!("cleanup.lua"),
            trim: engine_script!("trim.lua"),
            publish: engine_script!("publish.lua"),
            progress: engine_script!("progress.lua"),
            limits: engine_script!("limits.lua"),
            breaker: Script::new(include_str!("lua/breaker.lua")),
            rate_limit: Script::new(include_str!("lua/rate_limit.lua")),
        }
    }

    pub fn all(&self) -> [&Script; 15] {
        [
            &self.push,
            &self.fetch,
            &self.complete,
            &self.renew,
            &self.cancel,
            &self.drain,
            &self.requeue,
            &self.discard,
            &self.cleanup,
            &self.trim,
            &self.publish,
            &self.progress,
            &self.limits,
            &self.breaker,
            &self.rate_limit,
        ]
    }
}
