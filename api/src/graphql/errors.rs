//! Gives every error a code: resolver errors carry theirs; errors raised by async-graphql
//! itself (parsing, validation, limits, argument types) get the matching contract code; an
//! error that reaches a client without one is an internal failure, logged and replaced.

use std::sync::Arc;

use async_graphql::{
    Response, ServerError, Value,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextRequest, NextSubscribe},
    futures_util::stream::BoxStream,
};
use futures::StreamExt;

pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension)
    }
}

struct ErrorCodesExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        response.errors.iter_mut().for_each(classify);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream)
            .map(|mut response| {
                response.errors.iter_mut().for_each(classify);
                response
            })
            .boxed()
    }
}

fn has_code(error: &ServerError) -> bool {
    error
        .extensions
        .as_ref()
        .is_some_and(|ext| ext.get("code").is_some())
}

fn set(error: &mut ServerError, key: &str, value: impl Into<Value>) {
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set(key, value);
}

pub(crate) fn classify(error: &mut ServerError) {
    if has_code(error) {
        return;
    }
    let message = error.message.clone();
    let message = message.as_str();
    if message.starts_with("Query is nested too deep")
        || message.starts_with("Query is too complex")
        || message.starts_with("The recursion depth")
        || message.contains("too many directives")
    {
        set(error, "code", "LIMIT_EXCEEDED");
    } else if error.path.is_empty() {
        // No path: parsing or validation of the document and its variables.
        set(error, "code", "BAD_USER_INPUT");
        if let Some(field) = variable_of(message) {
            set(error, "field", field);
        }
    } else if let Some(variable) = message
        .strip_prefix("Variable ")
        .and_then(|rest| rest.strip_suffix(" is not defined."))
    {
        // A `$variable` the operation declares but the request did not send.
        set(error, "code", "BAD_USER_INPUT");
        set(error, "field", variable.trim_start_matches('$').to_owned());
    } else if message.starts_with("Failed to parse")
        || message.starts_with("Invalid value")
        || message.starts_with("Expected input type")
    {
        set(error, "code", "BAD_USER_INPUT");
        let field = error
            .path
            .last()
            .map(|p| match p {
                async_graphql::PathSegment::Field(f) => f.clone(),
                async_graphql::PathSegment::Index(i) => i.to_string(),
            })
            .unwrap_or_default();
        set(error, "field", field);
    } else {
        tracing::error!(error = %error.message, path = ?error.path, "uncoded error in a resolver");
        error.message = "internal error; the server log has the details".into();
        set(error, "code", "INTERNAL");
    }
}

/// `Invalid value for argument "first"` / `Variable "$input" got invalid value`: the input named.
fn variable_of(message: &str) -> Option<String> {
    let start = message.find('"')? + 1;
    let end = start + message[start..].find('"')?;
    Some(message[start..end].trim_start_matches('$').to_owned())
}
