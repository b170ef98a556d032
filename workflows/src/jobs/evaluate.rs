//! `evaluate`: applies a sensor's rules to every reading not yet evaluated. The payload and its
//! policy are here; the handler arrives with the rest of the pipeline.

use std::time::Duration;

use queue::RetryPolicy;
use serde::{Deserialize, Serialize};

use crate::{Job, JobPolicy, ValidationError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluate {
    /// The sensor's key.
    pub sensor: String,
}

impl Job for Evaluate {
    const KIND: &'static str = "evaluate";
    const PAYLOAD_VERSION: u32 = 1;

    fn policy() -> JobPolicy {
        JobPolicy {
            retry: RetryPolicy {
                max_attempts: 10,
                backoff_base: Duration::from_millis(500),
                backoff_cap: Duration::from_secs(120),
            },
            visibility_timeout: Duration::from_secs(60),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.sensor.is_empty() || self.sensor.len() > 128 {
            return Err(ValidationError::new(
                "sensor",
                "must be 1 to 128 characters",
            ));
        }
        Ok(())
    }
}
