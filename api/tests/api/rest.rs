//! The REST endpoints: device readings, sensor status, health, readiness and metrics.

use serde_json::{Value, json};

use super::common::{Deployment, Sql, readings};

#[tokio::test]
async fn devices_post_readings_for_their_own_sensors_only() {
    let deployment = Deployment::new(Sql::Sqlite, "rest-devices").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let admin = Some(team.admin.access.as_str());
    for key in ["mine", "theirs"] {
        api.ok(
            admin,
            "mutation($k: String!) { createSensor(input: {key: $k, name: $k, unit: \"C\"}) { id } }",
            json!({ "k": key }),
        )
        .await;
    }
    let created = |sensor: &'static str| {
        let api = &api;
        async move {
            api.ok(
                admin,
                "mutation($k: String!) { createDevice(input: {name: $k, sensorKeys: [$k]}) { apiKey } }",
                json!({ "k": sensor }),
            )
            .await["createDevice"]["apiKey"]
                .as_str()
                .expect("key")
                .to_owned()
        }
    };
    let key = created("mine").await;
    created("theirs").await;
    let post = |body: Value, headers: Vec<(&'static str, String)>| {
        let mut request = api
            .http
            .post(format!("{}/api/sensors/data", api.url))
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.expect("post");
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").is_some();
            let body: Value = response.json().await.expect("json body");
            (status, body, retry_after)
        }
    };
    let bearer = || vec![("authorization", format!("Bearer {key}"))];

    let (status, body, _) = post(readings("mine", 0, &[1.0, 2.0]), bearer()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["duplicate"], false);
    let job_id = body["jobId"].as_str().expect("job id").to_owned();

    let with_key = |k: &str| {
        let mut h = vec![("x-api-key", key.clone())];
        h.push(("idempotency-key", k.to_owned()));
        h
    };
    let (status, first, _) = post(readings("mine", 2, &[3.0]), with_key("batch-7")).await;
    assert_eq!(status, 202);
    let (status, second, _) = post(readings("mine", 2, &[3.0]), with_key("batch-7")).await;
    assert_eq!(status, 202);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["jobId"], first["jobId"]);

    let (status, body, _) = post(readings("theirs", 0, &[1.0]), bearer()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    assert_eq!(body["error"]["field"], "readings.0.sensor");
    let (status, body, _) = post(readings("mine", 0, &[1.0]), vec![]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (status, body, _) = post(
        readings("mine", 0, &[1.0]),
        vec![("x-api-key", "sfd_wrong".into())],
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (status, body, _) = post(
        json!({ "readings": [{ "sensor": "mine", "ts": "x", "value": 1 }] }),
        bearer(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "BAD_USER_INPUT");
    assert_eq!(body["error"]["field"], "readings.0.ts");
    let response = api
        .http
        .post(format!("{}/api/sensors/data", api.url))
        .header("authorization", format!("Bearer {key}"))
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["field"], "body");

    // Only the accepted jobs were queued: the first and the keyed one.
    assert_eq!(
        deployment
            .engine()
            .stats("ingest")
            .await
            .expect("stats")
            .ready,
        2
    );
    assert!(
        deployment
            .engine()
            .job(&job_id)
            .await
            .expect("job")
            .is_some()
    );

    // Status: the device for its own sensor, any signed-in user for any.
    let status_of = |sensor: &str, auth: String| {
        let request = api
            .http
            .get(format!("{}/api/sensors/{sensor}/status", api.url))
            .header("authorization", auth);
        async move {
            let response = request.send().await.expect("get");
            (
                response.status().as_u16(),
                response.json::<Value>().await.expect("json"),
            )
        }
    };
    let (status, body) = status_of("mine", format!("Bearer {key}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["key"], "mine");
    assert_eq!(body["openAlerts"], 0);
    let (status, _) = status_of("theirs", format!("Bearer {key}")).await;
    assert_eq!(status, 403);
    let (status, _) = status_of("theirs", format!("Bearer {}", team.viewer.access)).await;
    assert_eq!(status, 200);
    let (status, body) = status_of("nobody", format!("Bearer {}", team.viewer.access)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    api.stop().await;
}

#[tokio::test]
async fn health_ready_and_metrics_answer() {
    let deployment = Deployment::new(Sql::Sqlite, "rest-probes").await;
    let api = deployment.api(&[]).await;
    let health: Value = super::common::get(format!("{}/health", api.url))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    let response = super::common::get(format!("{}/ready", api.url)).await;
    assert_eq!(response.status().as_u16(), 200);
    let ready: Value = response.json().await.expect("json");
    assert_eq!(ready["redis"]["up"], true);
    assert_eq!(ready["database"]["up"], true);
    assert_eq!(ready["database"]["backend"], "sqlite");
    assert!(ready["redis"]["durability"].is_string(), "{ready}");
    assert!(ready["circuitBreakers"].is_array());

    // Something to count, then a scrape that parses as the Prometheus text format.
    let team = api.team().await;
    let mut client = super::common::WsClient::connect(&api, Some(&team.viewer.access))
        .await
        .expect("connects");
    client
        .subscribe("1", "subscription { jobUpdates { cursor } }", json!({}))
        .await;
    let metrics = super::common::eventually(
        std::time::Duration::from_secs(5),
        "the subscription to be counted",
        || async {
            let text = super::common::get(format!("{}/metrics", api.url))
                .await
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if text.contains("steadfast_api_subscriptions") {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (_, value) = line.rsplit_once(' ').expect("name value");
        assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
    }
    client.close().await;

    // Requests are counted by route pattern, method and status, never by the raw path or a
    // made-up method.
    let http = reqwest::Client::new();
    let status_url = format!("{}/api/sensors/no-such-sensor-7f3a/status", api.url);
    let unknown = http.get(&status_url).send().await.expect("request");
    let odd_method = reqwest::Method::from_bytes(b"BREW").expect("method");
    let brewed = http
        .request(odd_method, format!("{}/health", api.url))
        .send()
        .await
        .expect("request");
    let text = super::common::get(format!("{}/metrics", api.url))
        .await
        .text()
        .await
        .expect("metrics text");
    let count = |method: &str, route: &str, status: u16| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("steadfast_api_http_requests_total{"))
            .filter(|l| {
                l.contains(&format!("method=\"{method}\""))
                    && l.contains(&format!("route=\"{route}\""))
                    && l.contains(&format!("status=\"{status}\""))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("GET", "/health", 200), 1.0, "{text}");
    assert_eq!(count("GET", "/ready", 200), 1.0, "{text}");
    assert!(count("GET", "/metrics", 200) >= 1.0, "{text}");
    assert_eq!(
        count(
            "GET",
            "/api/sensors/{key}/status",
            unknown.status().as_u16()
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        count("OTHER", "/health", brewed.status().as_u16()),
        1.0,
        "{text}"
    );
    assert!(
        !text.contains("no-such-sensor-7f3a"),
        "a raw path became a label"
    );
    assert!(
        text.contains(
            "steadfast_api_http_request_duration_seconds_count{method=\"GET\",route=\"/health\"} 1"
        ),
        "{text}"
    );

    let graphiql = super::common::get(format!("{}/graphql", api.url))
        .await
        .text()
        .await
        .expect("html");
    assert!(graphiql.contains("graphiql"), "GraphiQL page");
    let missing = super::common::get(format!("{}/no/such/page", api.url)).await;
    assert_eq!(missing.status().as_u16(), 404);
    api.stop().await;
}
