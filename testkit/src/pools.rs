//! Worker pools in the test process, tuned for tests
//! (millisecond backoff and breaker, short timeouts), stopped on demand.

use std::time::Duration;

use migration::testing::TestDb;
use queue::{BreakerPolicy, Engine};
use tokio::{sync::oneshot, task::JoinHandle};
use workflows::jobs::notify::{DestinationPolicy, Notifier, NotifyConfig};

use runtime::{Context, PoolConfig, PoolError};

/// The webhook notifier the tests use: short timeouts, loopback receivers allowed, a breaker
/// that opens after `breaker_failures` and cools down in 300 ms.
pub(crate) fn notifier(breaker_failures: u32) -> Notifier {
    Notifier::new(NotifyConfig {
        timeout: Duration::from_millis(500),
        breaker: BreakerPolicy {
            failure_threshold: breaker_failures,
            cool_down: Duration::from_millis(300),
            probe_timeout: Duration::from_millis(500),
        },
        destinations: DestinationPolicy::allowing_loopback(),
        ..NotifyConfig::default()
    })
    .expect("notifier")
}

/// Every queue, four wide, with millisecond backoff and a short shutdown grace.
pub(crate) fn test_config() -> PoolConfig {
    let mut config = PoolConfig::all_queues("test");
    config.concurrency = 4;
    config.backoff = Some((Duration::from_millis(5), Duration::from_millis(50)));
    config.shutdown_grace = Duration::from_millis(500);
    config
}

/// Runs every queue's pool over `db` and `engine`, with the connections the binaries use (the
/// recorders' own pool on PostgreSQL); `tweak` adjusts the test settings, and
/// `breaker_failures` is how many consecutive failures open a destination's breaker.
pub fn start_pools(
    db: &TestDb,
    engine: &Engine,
    breaker_failures: u32,
    tweak: impl FnOnce(&mut PoolConfig),
) -> Pools {
    let notifier = notifier(breaker_failures);
    let mut config = test_config();
    tweak(&mut config);
    let ctx = Context::new(db.db().clone(), engine.clone(), notifier);
    let url = db.url().to_owned();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let ctx = ctx
            .with_ledger_pool(&url, config.ledger_recorders)
            .await
            .expect("the ledger's pool");
        runtime::run_pools(ctx, config, async move {
            let _ = stopped.await;
            Ok(())
        })
        .await
    });
    Pools {
        stop: Some(stop),
        handle,
    }
}

/// Running pools; [`Pools::stop`] stops them gracefully and checks they stopped cleanly.
#[derive(Debug)]
pub struct Pools {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), PoolError>>,
}

impl Pools {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.handle)
            .await
            .expect("join pools")
            .expect("pools stop cleanly");
    }
}
