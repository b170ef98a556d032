//! Who may do what, and how access ends: closed sign-up and the production bootstrap, admin
//! account creation, disabling a user (tokens, refreshes and sockets end), refresh rotation
//! racing sign-out, device keys revoked and rotated, channels disabled, deleted and shown
//! redacted, and the production defaults (no GraphiQL or introspection, an operators' port).

use std::time::Duration;

use serde_json::{Value, json};

use super::common::{
    Api, Deployment, PASSWORD, Sql, WsClient, WsEvent, code, eventually, field, readings,
};

const ME: &str = "{ me { id email role } }";
const REFRESH: &str =
    "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken } }";
const REGISTER: &str = "mutation($e: String!, $p: String!, $b: String) { register(email: $e, password: $p, bootstrapToken: $b) { accessToken user { role } } }";
const PRODUCTION_SECRET: &str = "a-production-secret-of-at-least-32-bytes";

async fn register_body(api: &Api, email: &str, bootstrap: Option<&str>) -> Value {
    api.gql(
        None,
        REGISTER,
        json!({ "e": email, "p": PASSWORD, "b": bootstrap }),
    )
    .await
}

#[tokio::test]
async fn sign_up_closes_once_an_admin_exists_and_admins_create_accounts() {
    let deployment = Deployment::new(Sql::Sqlite, "signup-closed").await;
    let api = deployment.api(&[]).await;
    let policy = "{ signUpPolicy { open bootstrapTokenRequired } }";
    assert_eq!(
        api.ok(None, policy, json!({})).await["signUpPolicy"],
        json!({ "open": true, "bootstrapTokenRequired": false })
    );
    let admin = api.register("admin@example.com").await;
    assert_eq!(admin.role, "ADMIN");
    assert_eq!(
        api.ok(None, policy, json!({})).await["signUpPolicy"]["open"],
        false
    );
    let refused = register_body(&api, "stranger@example.com", None).await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");

    let create = "mutation($e: String!, $r: Role!) { createUser(email: $e, password: \"correct horse battery staple\", role: $r) { id email role disabledAt } }";
    let created = api
        .ok(
            Some(&admin.access),
            create,
            json!({ "e": "Op@Example.com", "r": "OPERATOR" }),
        )
        .await;
    assert_eq!(created["createUser"]["role"], "OPERATOR");
    assert_eq!(created["createUser"]["email"], "op@example.com");
    let operator = api.login("op@example.com").await;
    assert_eq!(operator.role, "OPERATOR");
    // Only admins create accounts, and an email is taken once.
    let by_operator = api
        .gql(
            Some(&operator.access),
            create,
            json!({ "e": "x@example.com", "r": "ADMIN" }),
        )
        .await;
    assert_eq!(code(&by_operator), "FORBIDDEN");
    let again = api
        .gql(
            Some(&admin.access),
            create,
            json!({ "e": "op@example.com", "r": "VIEWER" }),
        )
        .await;
    assert_eq!((code(&again), field(&again)), ("BAD_USER_INPUT", "email"));
    let audit = api
        .ok(
            Some(&admin.access),
            "{ auditLog(first: 10) { nodes { action target } } }",
            json!({}),
        )
        .await;
    assert!(
        audit["auditLog"]["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|e| e["action"] == "user.create")),
        "{audit}"
    );
    api.stop().await;

    // Open sign-up is an explicit setting.
    let open = deployment.api(&["--allow-signup"]).await;
    let viewer = register_body(&open, "viewer@example.com", None).await;
    assert_eq!(
        viewer["data"]["register"]["user"]["role"], "VIEWER",
        "{viewer}"
    );
    open.stop().await;
}

#[tokio::test]
async fn a_production_deployment_gets_its_first_admin_only_with_the_bootstrap_token() {
    let deployment = Deployment::new(Sql::Sqlite, "bootstrap").await;
    let secret = format!("--jwt-secret={PRODUCTION_SECRET}");
    let without = deployment.api(&["--mode=production", &secret]).await;
    let refused = register_body(&without, "admin@example.com", None).await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("BOOTSTRAP_ADMIN_TOKEN")),
        "{refused}"
    );
    without.stop().await;

    let token = "bootstrap-token-0123456789";
    let bootstrap = format!("--bootstrap-admin-token={token}");
    let api = deployment
        .api(&["--mode=production", &secret, &bootstrap])
        .await;
    assert_eq!(
        api.ok(
            None,
            "{ signUpPolicy { open bootstrapTokenRequired } }",
            json!({})
        )
        .await["signUpPolicy"],
        json!({ "open": true, "bootstrapTokenRequired": true })
    );
    for wrong in [None, Some("bootstrap-token-9876543210")] {
        let refused = register_body(&api, "admin@example.com", wrong).await;
        assert_eq!(
            (code(&refused), field(&refused)),
            ("FORBIDDEN", "bootstrapToken"),
            "{refused}"
        );
    }
    let admin = register_body(&api, "admin@example.com", Some(token)).await;
    assert_eq!(
        admin["data"]["register"]["user"]["role"], "ADMIN",
        "{admin}"
    );
    // The token made one admin; it opens nothing after that.
    let second = register_body(&api, "second@example.com", Some(token)).await;
    assert_eq!(code(&second), "FORBIDDEN");
    api.stop().await;
}

#[tokio::test]
async fn production_serves_no_graphiql_or_introspection_unless_enabled() {
    let deployment = Deployment::new(Sql::Sqlite, "introspection").await;
    let secret = format!("--jwt-secret={PRODUCTION_SECRET}");
    let introspect = "{ __schema { queryType { name } } }";
    let production = deployment.api(&["--mode=production", &secret]).await;
    let page = super::common::get(format!("{}/graphql", production.url)).await;
    assert_eq!(page.status().as_u16(), 404);
    let body = production.gql(None, introspect, json!({})).await;
    assert!(
        body["data"]["__schema"].is_null(),
        "introspection is off: {body}"
    );
    production.stop().await;

    let enabled = deployment
        .api(&["--mode=production", &secret, "--graphql-introspection=true"])
        .await;
    let page = super::common::get(format!("{}/graphql", enabled.url)).await;
    assert_eq!(page.status().as_u16(), 200);
    let body = enabled.ok(None, introspect, json!({})).await;
    assert_eq!(body["__schema"]["queryType"]["name"], "Query");
    enabled.stop().await;

    let development = deployment.api(&[]).await;
    development.ok(None, introspect, json!({})).await;
    development.stop().await;
}

/// A disabled user's access token is refused on every replica within about a second, their
/// refresh token no longer works, their open socket is closed with 4403, and they cannot sign
/// in; enabling them again lets them sign in.
#[tokio::test]
async fn a_disabled_user_loses_tokens_refreshes_and_sockets_within_seconds() {
    let deployment = Deployment::new(Sql::Sqlite, "disable").await;
    let api = deployment.api(&[]).await;
    let replica = deployment.api(&[]).await;
    let team = api.team().await;
    let viewer = team.viewer.clone();
    replica.ok(Some(&viewer.access), ME, json!({})).await;
    let mut socket = WsClient::connect(&replica, Some(&viewer.access))
        .await
        .expect("socket");
    socket
        .subscribe("q", "subscription { queueStats { name } }", json!({}))
        .await;

    let disable = "mutation($u: ID!, $d: Boolean!) { setUserDisabled(userId: $u, disabled: $d) { id disabledAt } }";
    let disabled = api
        .ok(
            Some(&team.admin.access),
            disable,
            json!({ "u": viewer.user_id, "d": true }),
        )
        .await;
    assert!(disabled["setUserDisabled"]["disabledAt"].is_string());
    // At once on the process that disabled them.
    assert_eq!(
        code(&api.gql(Some(&viewer.access), ME, json!({})).await),
        "UNAUTHENTICATED"
    );
    // Within the reload period on the other replica.
    eventually(
        Duration::from_secs(5),
        "the replica refuses the token",
        || async {
            let body = replica.gql(Some(&viewer.access), ME, json!({})).await;
            match body["errors"][0]["extensions"]["code"].as_str() {
                Some("UNAUTHENTICATED") => Ok(()),
                _ => Err(body.to_string()),
            }
        },
    )
    .await;
    let closed = socket.next_not_data(Duration::from_secs(5)).await;
    assert!(
        matches!(closed, Some(WsEvent::Closed(Some(4403)))),
        "{closed:?}"
    );
    assert_eq!(
        code(&api.gql(None, REFRESH, json!({ "t": viewer.refresh })).await),
        "UNAUTHENTICATED"
    );
    let login = api
        .gql(
            None,
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
            json!({ "e": "viewer@example.com", "p": PASSWORD }),
        )
        .await;
    assert!(
        login["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("disabled")),
        "{login}"
    );
    // Admins cannot lock themselves out.
    let self_disable = api
        .gql(
            Some(&team.admin.access),
            disable,
            json!({ "u": team.admin.user_id, "d": true }),
        )
        .await;
    assert_eq!(code(&self_disable), "BAD_USER_INPUT");

    api.ok(
        Some(&team.admin.access),
        disable,
        json!({ "u": viewer.user_id, "d": false }),
    )
    .await;
    let back = api.login("viewer@example.com").await;
    api.ok(Some(&back.access), ME, json!({})).await;
    api.stop().await;
    replica.stop().await;
}

/// Refresh and sign-out of one login, at the same time, many times: whichever wins, the login
/// never ends with a live token in a revoked family.
async fn refresh_racing_sign_out_never_leaves_a_live_token(sql: Sql) {
    use entities::refresh_tokens;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let deployment = Deployment::new(sql, "refresh-race").await;
    let api = deployment.api(&["--login-attempts-per-minute=1000"]).await;
    api.register("admin@example.com").await;
    for round in 0..15 {
        let login = api.login("admin@example.com").await;
        let (refreshed, _) = tokio::join!(
            api.gql(None, REFRESH, json!({ "t": login.refresh })),
            api.gql(
                None,
                "mutation($t: String!) { logout(refreshToken: $t) }",
                json!({ "t": login.refresh })
            ),
        );
        let family = refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::TokenHash.eq(api::auth::secret_hash(&login.refresh)))
            .one(deployment.db.db())
            .await
            .expect("query")
            .expect("token")
            .family;
        let tokens = refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::Family.eq(&family))
            .all(deployment.db.db())
            .await
            .expect("family");
        let live: Vec<_> = tokens.iter().filter(|t| t.revoked_at.is_none()).collect();
        assert!(
            live.is_empty(),
            "round {round}: the login was signed out, yet {} token(s) live: {refreshed}",
            live.len()
        );
        // A token the refresh answered with is refused too.
        if let Some(new) = refreshed["data"]["refreshToken"]["refreshToken"].as_str() {
            assert_eq!(
                code(&api.gql(None, REFRESH, json!({ "t": new })).await),
                "UNAUTHENTICATED"
            );
        }
    }
    api.stop().await;
}

mod refresh_racing_sign_out {
    #[tokio::test]
    async fn sqlite() {
        super::refresh_racing_sign_out_never_leaves_a_live_token(super::Sql::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres() {
        super::refresh_racing_sign_out_never_leaves_a_live_token(super::Sql::Postgres).await;
    }
}

/// An admin, one sensor and a device that writes it; answers (admin token, device id, key).
async fn device_setup(api: &Api) -> (String, String, String) {
    let admin = api.register("admin@example.com").await;
    let (device, key) = api.sensor_with_device(&admin.access, "tank").await;
    (admin.access, device, key)
}

/// POSTs readings with `key` (and an idempotency key); answers the status, the body and the
/// `Retry-After` header.
async fn post_readings(
    api: &Api,
    key: &str,
    body: &Value,
    idempotency: Option<&str>,
) -> (u16, Value, Option<String>) {
    let mut request = api
        .http
        .post(format!("{}/api/sensors/data", api.url))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = idempotency {
        request = request.header("idempotency-key", k);
    }
    let response = request.send().await.expect("post");
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, response.json().await.expect("json"), retry)
}

#[tokio::test]
async fn a_revoked_device_key_is_refused_at_once_and_a_rotated_one_replaces_it() {
    let deployment = Deployment::new(Sql::Sqlite, "device-keys").await;
    let api = deployment.api(&[]).await;
    let (admin, device, key) = device_setup(&api).await;
    let batch = readings("tank", 0, &[1.0]);
    assert_eq!(post_readings(&api, &key, &batch, None).await.0, 202);

    let revoked = api
        .ok(
            Some(&admin),
            "mutation($d: ID!) { revokeDevice(id: $d) { id revokedAt sensorKeys } }",
            json!({ "d": device }),
        )
        .await;
    assert!(revoked["revokeDevice"]["revokedAt"].is_string());
    let (status, body, _) = post_readings(&api, &key, &batch, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.to_string().contains("revoked"), "{body}");

    let rotated = api
        .ok(
            Some(&admin),
            "mutation($d: ID!) { rotateDeviceKey(id: $d) { apiKey device { revokedAt sensorKeys } } }",
            json!({ "d": device }),
        )
        .await;
    let fresh = rotated["rotateDeviceKey"]["apiKey"]
        .as_str()
        .expect("key")
        .to_owned();
    assert!(rotated["rotateDeviceKey"]["device"]["revokedAt"].is_null());
    assert_eq!(
        rotated["rotateDeviceKey"]["device"]["sensorKeys"],
        json!(["tank"])
    );
    assert_eq!(post_readings(&api, &key, &batch, None).await.0, 401);
    assert_eq!(post_readings(&api, &fresh, &batch, None).await.0, 202);
    let audit = api
        .ok(
            Some(&admin),
            "{ auditLog(first: 20) { nodes { action } } }",
            json!({}),
        )
        .await;
    let actions: Vec<&str> = audit["auditLog"]["nodes"]
        .as_array()
        .map(|n| n.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        actions.contains(&"device.revoke") && actions.contains(&"device.rotate_key"),
        "{actions:?}"
    );
    api.stop().await;
}

#[tokio::test]
async fn a_device_over_its_rate_is_told_when_to_retry_on_every_replica() {
    let deployment = Deployment::new(Sql::Sqlite, "device-rate").await;
    let api = deployment.api(&["--device-requests-per-minute=3"]).await;
    let replica = deployment.api(&["--device-requests-per-minute=3"]).await;
    let (_, _, key) = device_setup(&api).await;
    let batch = readings("tank", 0, &[1.0]);
    for target in [&api, &replica, &api] {
        assert_eq!(post_readings(target, &key, &batch, None).await.0, 202);
    }
    let (status, body, retry_after) = post_readings(&replica, &key, &batch, None).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    let seconds: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=21).contains(&seconds), "{seconds}");
    api.stop().await;
    replica.stop().await;
}

#[tokio::test]
async fn login_limits_are_shared_by_replicas_and_keyed_by_a_digest() {
    let deployment = Deployment::new(Sql::Sqlite, "login-rate").await;
    let api = deployment.api(&["--login-attempts-per-minute=2"]).await;
    let replica = deployment.api(&["--login-attempts-per-minute=2"]).await;
    api.register("admin@example.com").await;
    let attempt = |target: &Api, email: String| {
        let target_url = target.url.clone();
        let http = target.http.clone();
        async move {
            let body: Value = http
                .post(format!("{target_url}/graphql"))
                .json(&json!({
                    "query": "mutation($e: String!) { login(email: $e, password: \"wrong password!\") { accessToken } }",
                    "variables": { "e": email },
                }))
                .send()
                .await
                .expect("post")
                .json()
                .await
                .expect("json");
            body
        }
    };
    for target in [&api, &replica] {
        let body = attempt(target, "admin@example.com".into()).await;
        assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
    }
    let limited = attempt(&replica, "admin@example.com".into()).await;
    assert_eq!(code(&limited), "RATE_LIMITED", "{limited}");
    // A key too long to be an email is refused before it names anything in Redis.
    let huge = attempt(&api, format!("{}@example.com", "a".repeat(5000))).await;
    assert_eq!((code(&huge), field(&huge)), ("BAD_USER_INPUT", "email"));
    let mut conn = queue::testing::InspectConn::open(&deployment.redis_url);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}}}:rate:*", deployment.redis.prefix))
        .query(&mut conn)
        .expect("keys");
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| k.len() < 120 && !k.contains("example.com")),
        "{keys:?}"
    );
    api.stop().await;
    replica.stop().await;
}

#[tokio::test]
async fn channels_are_disabled_deleted_and_shown_redacted_to_non_admins() {
    let deployment = Deployment::new(Sql::Sqlite, "channels").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let admin = Some(team.admin.access.as_str());
    let created = api
        .ok(
            admin,
            "mutation { createChannel(input: {name: \"ops\", kind: WEBHOOK, url: \"https://hooks.example.com/services/T0/B0?token=s3cr3t\", secret: \"k\"}) { id url enabled } }",
            json!({}),
        )
        .await;
    let id = created["createChannel"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        created["createChannel"]["url"]
            .as_str()
            .is_some_and(|u| u.contains("s3cr3t"))
    );
    let seen = api
        .ok(
            Some(&team.viewer.access),
            "{ channels { id url } }",
            json!({}),
        )
        .await;
    assert_eq!(
        seen["channels"][0]["url"], "https://hooks.example.com/…",
        "a viewer sees scheme and host only"
    );
    let disabled = api
        .ok(
            admin,
            "mutation($c: ID!) { setChannelEnabled(id: $c, enabled: false) { enabled } }",
            json!({ "c": id }),
        )
        .await;
    assert_eq!(disabled["setChannelEnabled"]["enabled"], false);
    let by_operator = api
        .gql(
            Some(&team.operator.access),
            "mutation($c: ID!) { deleteChannel(id: $c) }",
            json!({ "c": id }),
        )
        .await;
    assert_eq!(code(&by_operator), "FORBIDDEN");
    let deleted = api
        .ok(
            admin,
            "mutation($c: ID!) { deleteChannel(id: $c) }",
            json!({ "c": id }),
        )
        .await;
    assert_eq!(deleted["deleteChannel"], true);
    assert_eq!(
        api.ok(admin, "{ channels { id } }", json!({})).await["channels"],
        json!([])
    );
    let audit = api
        .ok(
            admin,
            "{ auditLog(first: 20) { nodes { action details } } }",
            json!({}),
        )
        .await;
    let text = audit.to_string();
    assert!(
        text.contains("channel.disable") && text.contains("channel.delete"),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3t"),
        "the audit log keeps no URL secret: {text}"
    );
    // Unknown ids are a clear NOT_FOUND, whichever row they name.
    for (mutation, what) in [
        (
            "mutation { setChannelEnabled(id: \"999\", enabled: false) { id } }",
            "channel",
        ),
        ("mutation { revokeDevice(id: \"999\") { id } }", "device"),
        (
            "mutation { rotateDeviceKey(id: \"999\") { apiKey } }",
            "device",
        ),
        (
            "mutation { setUserDisabled(userId: \"999\", disabled: true) { id } }",
            "user",
        ),
        (
            "mutation { setUserRole(userId: \"999\", role: VIEWER) { id } }",
            "user",
        ),
    ] {
        let body = api.gql(admin, mutation, json!({})).await;
        assert_eq!(code(&body), "NOT_FOUND", "{mutation}: {body}");
        assert_eq!(
            body["errors"][0]["message"],
            format!("no {what} has id 999"),
            "{mutation}"
        );
    }
    // A private address is refused when the channel is made, not at its first delivery.
    let private = api
        .gql(
            admin,
            "mutation { createChannel(input: {name: \"meta\", kind: WEBHOOK, url: \"http://169.254.169.254/latest\", secret: \"k\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        (code(&private), field(&private)),
        ("BAD_USER_INPUT", "input.url")
    );
    api.stop().await;
}

#[tokio::test]
async fn an_operators_port_keeps_metrics_and_readiness_detail_off_the_public_one() {
    let deployment = Deployment::new(Sql::Sqlite, "ops-port").await;
    let config = deployment.config(&["--ops-addr=127.0.0.1:0"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let running = api::start(config, listener).await.expect("api starts");
    let public = running.url();
    let ops = format!("http://{}", running.ops_addr.expect("ops port"));
    assert_eq!(
        super::common::get(format!("{public}/metrics"))
            .await
            .status()
            .as_u16(),
        404
    );
    let ready: Value = super::common::get(format!("{public}/ready"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ready, json!({ "status": "ready" }), "no detail in public");
    let detail: Value = super::common::get(format!("{ops}/ready"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(detail["redis"]["up"], true, "{detail}");
    let metrics = super::common::get(format!("{ops}/metrics")).await;
    assert_eq!(metrics.status().as_u16(), 200);
    running.stop().await;
}
