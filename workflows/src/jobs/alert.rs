//! `alert`: opens, raises or resolves the alert of a rule and sensor. The payload and its
//! policy are here; the handler arrives with the rest of the pipeline.

use std::time::Duration;

use queue::RetryPolicy;
use serde::{Deserialize, Serialize};

use crate::{Job, JobPolicy, ValidationError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    pub rule: i64,
    /// The sensor's key.
    pub sensor: String,
    /// The reading that breached (or cleared).
    pub reading: i64,
    /// True for a breach, false for a return inside the clear threshold.
    pub breach: bool,
}

impl Job for Alert {
    const KIND: &'static str = "alert";
    const PAYLOAD_VERSION: u32 = 1;

    fn policy() -> JobPolicy {
        JobPolicy {
            retry: RetryPolicy {
                max_attempts: 10,
                backoff_base: Duration::from_millis(500),
                backoff_cap: Duration::from_secs(120),
            },
            visibility_timeout: Duration::from_secs(30),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.rule <= 0 {
            return Err(ValidationError::new("rule", "must be a rule id"));
        }
        if self.reading <= 0 {
            return Err(ValidationError::new("reading", "must be a reading id"));
        }
        if self.sensor.is_empty() || self.sensor.len() > 128 {
            return Err(ValidationError::new(
                "sensor",
                "must be 1 to 128 characters",
            ));
        }
        Ok(())
    }
}
