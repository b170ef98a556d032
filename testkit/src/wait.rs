//! Waiting for what happens in other tasks or processes (pools, API processes): for jobs the
//! test itself runs, [`crate::TestApp::drain`] needs no waiting.

use std::{future::Future, time::Duration};

/// Polls `check` until it returns `Ok`, failing with the last `Err`'s description after
/// `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(state) if tokio::time::Instant::now() >= deadline => {
                panic!("{what} did not happen within {within:?}; last seen: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
