//! Relay connections: `first` (at most 500) and `after`, keyset-paginated on each list's key,
//! plus `eventCursor`, the job-event stream position the list reflects.

use std::time::Duration;

use async_graphql::{
    OutputType, SimpleObject,
    connection::{Connection, Edge},
};
use queue::{Engine, EventStream};

use crate::error::{ApiError, ApiResult};

pub const DEFAULT_PAGE: i32 = 50;
pub const MAX_PAGE: i32 = 500;

/// What each list adds to the Relay shape.
#[derive(Debug, Clone, SimpleObject)]
pub struct ListMeta {
    /// The job-event stream position read before the list: subscribe to `jobUpdates` with
    /// `after: eventCursor` to see every change since, with no gap. Null when Redis is down.
    pub event_cursor: Option<String>,
}

pub type Page<N> = Connection<String, N, ListMeta>;

/// `first` checked: 1 to 500, default 50.
pub fn first(first: Option<i32>) -> ApiResult<u64> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(ApiError::bad_input(
            "first",
            format!("first must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(first as u64)
}

/// The stream position, or null if Redis does not answer quickly (lists are SQL only).
pub async fn event_cursor(engine: &Engine) -> Option<String> {
    tokio::time::timeout(
        Duration::from_millis(500),
        engine.stream_position(EventStream::Jobs),
    )
    .await
    .ok()
    .and_then(Result::ok)
}

/// A page from rows fetched with `limit first + 1`: the extra row only says there is more.
pub fn page<N: OutputType>(
    mut rows: Vec<(String, N)>,
    first: u64,
    event_cursor: Option<String>,
) -> Page<N> {
    let has_next = rows.len() as u64 > first;
    rows.truncate(first as usize);
    let mut connection =
        Connection::with_additional_fields(false, has_next, ListMeta { event_cursor });
    connection.edges.extend(
        rows.into_iter()
            .map(|(cursor, node)| Edge::new(cursor, node)),
    );
    connection
}

/// Complexity of a list field: its page size times what each node asks for.
pub fn complexity(first: Option<i32>, child: usize) -> usize {
    (first.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize).saturating_mul(child)
}

/// What a list without `first` is expected to hold, for its complexity: every list is
/// counted, not only Relay connections, so a query cannot multiply SQL work with aliases of a
/// plain list (each alias counts again).
pub mod expected {
    /// `sensors`, and top-level lists of one kind of thing (`channels`, `devices`).
    pub const TOP_LEVEL: usize = 100;
    /// The children of one thing: a sensor's rules, an alert's deliveries, a run's steps.
    pub const CHILDREN: usize = 10;
    /// A job's attempts (up to its max attempts).
    pub const ATTEMPTS: usize = 25;
}

/// Complexity of a plain list expected to hold `expected` items.
pub fn list_complexity(expected: usize, child: usize) -> usize {
    expected.saturating_mul(child.max(1))
}

/// An integer keyset cursor.
pub fn int_cursor(after: Option<&str>) -> ApiResult<Option<i64>> {
    after
        .map(|a| {
            a.parse::<i64>()
                .map_err(|_| ApiError::bad_input("after", "not a cursor of this list"))
        })
        .transpose()
}

/// Runs a keyset `query` for one page (`first + 1` rows) and builds the connection.
pub async fn fetch<E, N>(
    db: &sea_orm::DatabaseConnection,
    query: sea_orm::Select<E>,
    first: u64,
    event_cursor: Option<String>,
    cursor: impl Fn(&E::Model) -> String,
    node: impl Fn(E::Model) -> N,
) -> ApiResult<Page<N>>
where
    E: sea_orm::EntityTrait,
    N: OutputType,
{
    use sea_orm::QuerySelect;
    let rows = query.limit(first + 1).all(db).await?;
    let rows = rows.into_iter().map(|r| (cursor(&r), node(r))).collect();
    Ok(page(rows, first, event_cursor))
}
