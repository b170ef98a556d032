//! Request counts and latencies per route: the rate, errors and duration every HTTP service is
//! watched by.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    http::Method,
    middleware::Next,
    response::Response,
};

const REQUESTS: &str = "steadfast_api_http_requests_total";
const DURATION: &str = "steadfast_api_http_request_duration_seconds";

pub fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "HTTP requests answered, by method, route and status"
    );
    metrics::describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "HTTP request handling time, by method and route (for /graphql/ws: the upgrade only)"
    );
}

/// Counts and times each request to a route. Labelled by the route's pattern
/// (`/api/sensors/{key}/status`), never the raw path, and by a known method or `OTHER`: a scan
/// of random URLs or made-up methods must not grow the series without bound. It runs as a
/// route layer, so paths no route matches (the web app, 404s) are not counted here.
pub async fn record(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = known_method(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

fn known_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
