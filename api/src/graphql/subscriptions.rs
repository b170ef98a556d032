//! Counts the subscriptions open on this process (`steadfast_subscriptions_active`): each
//! stream holds a guard that takes itself off the count when the client goes away, whichever
//! way it goes.

use std::sync::Arc;

use async_graphql::{
    Response,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextSubscribe},
    futures_util::stream::BoxStream,
};
use futures::StreamExt;

pub struct SubscriptionGauge;

impl ExtensionFactory for SubscriptionGauge {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(SubscriptionGaugeExtension)
    }
}

struct SubscriptionGaugeExtension;

struct Open(metrics::Gauge);

impl Open {
    fn new() -> Self {
        let gauge = metrics::gauge!("steadfast_subscriptions_active");
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for SubscriptionGaugeExtension {
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let open = Open::new();
        next.run(ctx, stream)
            .map(move |response| {
                let _still_open = &open;
                response
            })
            .boxed()
    }
}
