//! `notify`: delivers to one channel, either about an alert or a free message. The payload and
//! its policy are here; the handler (signed webhooks, circuit breaker, in-app) arrives next.

use std::time::Duration;

use queue::RetryPolicy;
use serde::{Deserialize, Serialize};

use crate::{Job, JobPolicy, ValidationError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    pub channel: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Job for Notify {
    const KIND: &'static str = "notify";
    const PAYLOAD_VERSION: u32 = 1;

    fn policy() -> JobPolicy {
        JobPolicy {
            retry: RetryPolicy {
                max_attempts: 12,
                backoff_base: Duration::from_secs(1),
                backoff_cap: Duration::from_secs(600),
            },
            visibility_timeout: Duration::from_secs(30),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.channel <= 0 {
            return Err(ValidationError::new("channel", "must be a channel id"));
        }
        match (&self.alert, &self.message) {
            (Some(alert), None) if *alert > 0 => Ok(()),
            (Some(_), None) => Err(ValidationError::new("alert", "must be an alert id")),
            (None, Some(m)) if !m.is_empty() && m.len() <= 4096 => Ok(()),
            (None, Some(_)) => Err(ValidationError::new(
                "message",
                "must be 1 to 4096 characters",
            )),
            _ => Err(ValidationError::new(
                "alert",
                "give exactly one of alert and message",
            )),
        }
    }
}
