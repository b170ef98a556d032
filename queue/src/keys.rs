//! Redis key layout. Every key starts with the `{prefix}` hash tag, so one deployment lives in
//! one cluster slot and runs unchanged on a single Redis, Sentinel or Cluster.

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `{prefix}`, braces included.
    pub prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: format!("{{{prefix}}}"),
        }
    }
    pub fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.prefix)
    }
    pub fn queue(&self, queue: &str, part: &str) -> String {
        format!("{}:q:{queue}:{part}", self.prefix)
    }
    pub fn job_events(&self) -> String {
        format!("{}:events", self.prefix)
    }
    pub fn app_events(&self) -> String {
        format!("{}:app-events", self.prefix)
    }
    pub fn queues(&self) -> String {
        format!("{}:queues", self.prefix)
    }
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }
    pub fn worker(&self, id: &str) -> String {
        format!("{}:worker:{id}", self.prefix)
    }
    pub fn breaker(&self, name: &str) -> String {
        format!("{}:breaker:{name}", self.prefix)
    }
    pub fn rate_limit(&self, name: &str) -> String {
        format!("{}:rate:{name}", self.prefix)
    }
    pub fn breakers(&self) -> String {
        format!("{}:breakers", self.prefix)
    }
}
