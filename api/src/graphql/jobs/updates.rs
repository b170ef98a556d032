//! Watching jobs live: every transition, from now or resumed from a cursor.

use std::collections::HashSet;

use async_graphql::{ComplexObject, Context, ID, InputObject, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use queue::JobEvent;

use super::{Job, JobKind, JobProgress, JobState, ms_time};
use crate::{
    auth::Role,
    error::ApiError,
    graphql::{require, shared},
    hub::{JobFilter, event_run},
};

#[derive(Debug, Clone, Default, InputObject)]
pub struct JobUpdatesFilter {
    pub ids: Option<Vec<ID>>,
    pub kinds: Option<Vec<JobKind>>,
    pub states: Option<Vec<JobState>>,
    pub workflow_run_id: Option<ID>,
}

impl From<JobUpdatesFilter> for JobFilter {
    fn from(f: JobUpdatesFilter) -> Self {
        JobFilter {
            ids: f
                .ids
                .map(|ids| ids.into_iter().map(|id| id.0).collect::<HashSet<_>>()),
            kinds: f.kinds.map(|kinds| {
                kinds
                    .into_iter()
                    .map(|k| k.name().to_owned())
                    .collect::<HashSet<_>>()
            }),
            states: f.states.map(|states| {
                states
                    .into_iter()
                    .map(queue::JobState::from)
                    .collect::<HashSet<_>>()
            }),
            workflow_run_id: f.workflow_run_id.map(|id| id.0),
        }
    }
}

/// One transition of one job.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct JobUpdate {
    /// The stream position: resubscribe with `after: cursor` to resume right after it.
    pub cursor: String,
    pub job: Job,
    /// `enqueued`, `scheduled`, `promoted`, `started`, `progress`, `succeeded`,
    /// `retry_scheduled`, `lease_expired`, `snoozed`, `died`, `cancelled`, `requeued`,
    /// `released`, `discarded`.
    pub event: String,
    pub at: DateTime<Utc>,
    pub error: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    /// What a `progress` event reported.
    pub progress: Option<JobProgress>,
    #[graphql(skip)]
    run: Option<String>,
}

#[ComplexObject]
impl JobUpdate {
    async fn workflow_run_id(&self) -> Option<ID> {
        self.run.clone().map(ID)
    }
}

impl From<&JobEvent> for JobUpdate {
    fn from(event: &JobEvent) -> Self {
        Self {
            cursor: event.cursor.clone(),
            job: Job::from_event(event),
            event: event.event.clone(),
            at: ms_time(event.at_ms),
            error: event.error.clone(),
            next_run_at: event.next_run_at_ms.map(ms_time),
            progress: event
                .progress
                .as_ref()
                .map(|(percent, message)| JobProgress {
                    percent: *percent,
                    message: message.clone(),
                }),
            run: event_run(event).map(str::to_owned),
        }
    }
}

/// Whether `cursor` is a position in this deployment's job-event streams (one `ms-seq` part
/// per partition at most), and why not.
fn check_cursor(cursor: &str, partitions: u16) -> Result<(), String> {
    if cursor.len() > 42 * usize::from(partitions) {
        return Err("not an event cursor: too long".into());
    }
    queue::EventCursor::parse(cursor, partitions)
        .map(|_| ())
        .map_err(|_| "not an event cursor".into())
}

#[derive(Default)]
pub struct JobSubscription;

#[Subscription]
impl JobSubscription {
    /// Every transition of the jobs the filter matches. With `after` (a `cursor` or a list's
    /// `eventCursor`), first what the stream holds after it, then live: no gap, no repeat.
    async fn job_updates(
        &self,
        ctx: &Context<'_>,
        filter: Option<JobUpdatesFilter>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<JobUpdate>>> {
        require(ctx, Role::Viewer)?;
        if let Some(after) = &after
            && let Err(why) = check_cursor(after, shared(ctx).engine.partitions())
        {
            return Err(ApiError::bad_input("after", why).into());
        }
        let filter = JobFilter::from(filter.unwrap_or_default());
        Ok(shared(ctx)
            .hub
            .job_updates(filter, after)
            .map(|item| match item {
                Ok(event) => Ok(JobUpdate::from(event.as_ref())),
                Err(e) => Err(e.into()),
            }))
    }
}
