//! The API's one error type, and how it reads in GraphQL (`extensions.code`, `field`,
//! `retryAfterSeconds`) and in REST (`{"error": {"code", "message", "field"}}` plus a status and
//! `Retry-After`). Internal failures are logged with their detail and shown as `INTERNAL` only.

use async_graphql::{ErrorExtensions, Value as GqlValue};
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// The codes of the contract; every error a client sees carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    BadUserInput,
    NotFound,
    /// An edit named a version of the row that is no longer current.
    Conflict,
    Unavailable,
    RateLimited,
    LimitExceeded,
    CursorExpired,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::NotFound => "NOT_FOUND",
            Code::Conflict => "CONFLICT",
            Code::Unavailable => "UNAVAILABLE",
            Code::RateLimited => "RATE_LIMITED",
            Code::LimitExceeded => "LIMIT_EXCEEDED",
            Code::CursorExpired => "CURSOR_EXPIRED",
            Code::Internal => "INTERNAL",
        }
    }

    pub const ALL: [Code; 10] = [
        Code::Unauthenticated,
        Code::Forbidden,
        Code::BadUserInput,
        Code::NotFound,
        Code::Conflict,
        Code::Unavailable,
        Code::RateLimited,
        Code::LimitExceeded,
        Code::CursorExpired,
        Code::Internal,
    ];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::BadUserInput => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Conflict => StatusCode::CONFLICT,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            Code::CursorExpired => StatusCode::GONE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error as a client sees it. Deliberately not `Display`: async-graphql turns any `Display`
/// error into a message without a code, and this type must always keep its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// The path of the offending input (`input.payload.readings.0.ts`), for `BAD_USER_INPUT`.
    pub field: Option<String>,
    /// For `UNAVAILABLE` and `RATE_LIMITED`.
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            retry_after_seconds: None,
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, message)
    }

    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(Code::BadUserInput, message)
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(Code::NotFound, what)
    }

    /// An edit made against version `expected` of a row that moved on (to `current`, when
    /// known): nothing changed.
    pub fn stale(what: &str, expected: i64, current: Option<i64>) -> Self {
        let now = current.map_or_else(|| "a newer one".to_owned(), |v| v.to_string());
        Self {
            field: Some("expectedVersion".into()),
            ..Self::new(
                Code::Conflict,
                format!(
                    "the {what} changed since you read it (you had version {expected}, it is at \
                     {now} now); nothing was changed: reload it and apply your edit again"
                ),
            )
        }
    }

    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(Code::LimitExceeded, message)
    }

    pub fn unavailable(message: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self {
            retry_after_seconds: Some(retry_after_seconds.max(1)),
            ..Self::new(Code::Unavailable, message)
        }
    }

    pub fn rate_limited(message: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self {
            retry_after_seconds: Some(retry_after_seconds.max(1)),
            ..Self::new(Code::RateLimited, message)
        }
    }

    /// Logs `detail` and answers with nothing of it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            Code::Internal,
            "internal error; the server log has the details",
        )
    }

    /// The error a GraphQL answer carried, as the REST surface answers it.
    pub fn from_graphql(error: &async_graphql::ServerError) -> Self {
        let extension = |name: &str| {
            error
                .extensions
                .as_ref()
                .and_then(|e| e.get(name))
                .and_then(|v| v.clone().into_json().ok())
        };
        let code = extension("code")
            .and_then(|v| v.as_str().and_then(Code::parse))
            .unwrap_or(Code::Internal);
        Self {
            code,
            message: error.message.clone(),
            field: extension("field").and_then(|v| v.as_str().map(str::to_owned)),
            retry_after_seconds: extension("retryAfterSeconds").and_then(|v| v.as_u64()),
        }
    }

    pub fn into_gql(self) -> async_graphql::Error {
        self.into()
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        async_graphql::Error::new(e.message.clone()).extend_with(|_, ext| {
            ext.set("code", e.code.as_str());
            if let Some(field) = &e.field {
                ext.set("field", field.as_str());
            }
            if let Some(seconds) = e.retry_after_seconds {
                ext.set("retryAfterSeconds", GqlValue::from(seconds));
            }
        })
    }
}

impl From<queue::QueueError> for ApiError {
    fn from(e: queue::QueueError) -> Self {
        match &e {
            queue::QueueError::StreamFull { retry_after, .. } => ApiError::unavailable(
                "the job system is catching up with its backlog; retry shortly",
                retry_after.as_secs().max(1),
            ),
            queue::QueueError::CursorExpired(cursor) => ApiError::new(
                Code::CursorExpired,
                format!(
                    "cursor {cursor} is older than the events the server still holds; reload and subscribe from the new eventCursor"
                ),
            ),
            queue::QueueError::InvalidJob(why) => ApiError::bad_input("input", why.clone()),
            queue::QueueError::InvalidArgument(why) => ApiError::bad_input("input", why.clone()),
            _ if e.is_retryable() => {
                tracing::warn!(error = %e, "redis unavailable");
                let reason = e
                    .unavailable_reason()
                    .unwrap_or("the job queue (Redis) is unreachable");
                ApiError::unavailable(format!("{reason}; retry shortly"), 2)
            }
            _ => ApiError::internal(e),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        match &e {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::unavailable("the database is unreachable; retry shortly", 2)
            }
            _ if e.to_string().contains("timed out")
                || e.to_string().contains("Connection refused") =>
            {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::unavailable("the database is unreachable; retry shortly", 2)
            }
            _ => ApiError::internal(e),
        }
    }
}

impl From<entities::manage::ManageError> for ApiError {
    fn from(e: entities::manage::ManageError) -> Self {
        use entities::manage::ManageError;
        match e {
            ManageError::NotFound(what) => ApiError::not_found(what),
            ManageError::Stale {
                what,
                expected,
                current,
            } => ApiError::stale(what, expected, current),
            ManageError::Refused { field, message } => ApiError::bad_input(field, message),
            ManageError::Db(e) => e.into(),
        }
    }
}

impl From<workflows::ledger::LedgerError> for ApiError {
    fn from(e: workflows::ledger::LedgerError) -> Self {
        match e {
            workflows::ledger::LedgerError::Queue(q) => q.into(),
            workflows::ledger::LedgerError::Db(d) => d.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        if let Some(seconds) = self.retry_after_seconds {
            body["retryAfterSeconds"] = json!(seconds);
        }
        let mut response = (self.code.status(), Json(json!({ "error": body }))).into_response();
        if let Some(seconds) = self.retry_after_seconds
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
