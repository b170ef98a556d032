//! Accounts, tokens and roles, through real HTTP.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::common::{Deployment, JWT_SECRET, PASSWORD, Sql, code, field};

const ME: &str = "{ me { id email role } }";
const REFRESH: &str = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken user { id role } } }";

#[tokio::test]
async fn the_first_account_is_admin_later_ones_viewers_and_login_refresh_work() {
    let deployment = Deployment::new(Sql::Sqlite, "auth-flow").await;
    let api = deployment.api(&["--allow-signup"]).await;
    let admin = api.register("Admin@Example.com").await;
    assert_eq!(admin.role, "ADMIN");
    let viewer = api.register("someone@example.com").await;
    assert_eq!(viewer.role, "VIEWER");

    let me = api.ok(Some(&admin.access), ME, json!({})).await;
    assert_eq!(
        me["me"]["email"], "admin@example.com",
        "emails are kept lower-case"
    );

    let duplicate = api
        .gql(
            None,
            "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { accessToken } }",
            json!({ "e": "someone@example.com", "p": PASSWORD }),
        )
        .await;
    assert_eq!(code(&duplicate), "BAD_USER_INPUT");
    assert_eq!(field(&duplicate), "email");
    let weak = api
        .gql(
            None,
            "mutation { register(email: \"x@example.com\", password: \"short\") { accessToken } }",
            json!({}),
        )
        .await;
    assert_eq!(field(&weak), "password");

    let wrong = api
        .gql(
            None,
            "mutation { login(email: \"admin@example.com\", password: \"not the password\") { accessToken } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&wrong), "UNAUTHENTICATED");
    let unknown = api
        .gql(
            None,
            "mutation { login(email: \"nobody@example.com\", password: \"not the password\") { accessToken } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&unknown), "UNAUTHENTICATED");
    assert_eq!(
        wrong["errors"][0]["message"], unknown["errors"][0]["message"],
        "a wrong password and an unknown email read the same"
    );

    let login = api.login("admin@example.com").await;
    let refreshed = api.ok(None, REFRESH, json!({ "t": login.refresh })).await;
    let new_access = refreshed["refreshToken"]["accessToken"]
        .as_str()
        .expect("access");
    let me = api.ok(Some(new_access), ME, json!({})).await;
    assert_eq!(me["me"]["role"], "ADMIN");

    let users = api
        .ok(
            Some(new_access),
            "{ users(first: 10) { edges { node { email role } } } }",
            json!({}),
        )
        .await;
    assert_eq!(users["users"]["edges"].as_array().map(Vec::len), Some(2));
    // Signing out ends the login: its latest refresh token no longer works.
    let latest = refreshed["refreshToken"]["refreshToken"]
        .as_str()
        .expect("refresh");
    let out = api
        .ok(
            None,
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": latest }),
        )
        .await;
    assert_eq!(out["logout"], true);
    assert_eq!(
        code(&api.gql(None, REFRESH, json!({ "t": latest })).await),
        "UNAUTHENTICATED"
    );
    api.stop().await;
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_its_whole_family() {
    let deployment = Deployment::new(Sql::Sqlite, "auth-reuse").await;
    let api = deployment.api(&[]).await;
    let first = api.register("admin@example.com").await;
    let other_login = api.login("admin@example.com").await;

    let second = api.ok(None, REFRESH, json!({ "t": first.refresh })).await;
    let second_refresh = second["refreshToken"]["refreshToken"]
        .as_str()
        .expect("rotated")
        .to_owned();

    // The spent token comes back (a thief replays it): refused, and the family is revoked.
    let replay = api.gql(None, REFRESH, json!({ "t": first.refresh })).await;
    assert_eq!(code(&replay), "UNAUTHENTICATED");
    assert!(
        replay["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already used")),
        "{replay}"
    );
    let after = api.gql(None, REFRESH, json!({ "t": second_refresh })).await;
    assert_eq!(
        code(&after),
        "UNAUTHENTICATED",
        "the rotated token of the same family is revoked too"
    );
    // Another login of the same user is another family: untouched.
    api.ok(None, REFRESH, json!({ "t": other_login.refresh }))
        .await;

    let actions = api.audit_actions(&other_login.access, "").await;
    assert!(
        actions.iter().any(|a| a == "auth.refresh_reuse"),
        "{actions:?}"
    );

    let garbage = api.gql(None, REFRESH, json!({ "t": "sfr_nonsense" })).await;
    assert_eq!(code(&garbage), "UNAUTHENTICATED");
    api.stop().await;
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    role: &'a str,
    iat: u64,
    exp: u64,
    typ: &'a str,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test]
async fn tampered_expired_and_unsigned_tokens_are_refused() {
    let deployment = Deployment::new(Sql::Sqlite, "auth-tokens").await;
    let api = deployment.api(&[]).await;
    let admin = api.register("admin@example.com").await;

    // Tampered: the payload swapped for one claiming another role, the signature kept.
    let parts: Vec<&str> = admin.access.split('.').collect();
    use base64::Engine as _;
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({ "sub": "2", "role": "ADMIN", "iat": now(), "exp": now() + 600, "typ": "access" })
            .to_string(),
    );
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let body = api.gql(Some(&tampered), ME, json!({})).await;
    assert_eq!(code(&body), "UNAUTHENTICATED");

    // Signed with another secret.
    let claims = Claims {
        sub: &admin.user_id,
        role: "ADMIN",
        iat: now(),
        exp: now() + 600,
        typ: "access",
    };
    let foreign = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"some other secret entirely, 32+ bytes"),
    )
    .expect("encode");
    assert_eq!(
        code(&api.gql(Some(&foreign), ME, json!({})).await),
        "UNAUTHENTICATED"
    );

    // Expired, though correctly signed.
    let expired = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Claims {
            iat: now() - 1000,
            exp: now() - 10,
            ..claims
        },
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("encode");
    let body = api.gql(Some(&expired), ME, json!({})).await;
    assert_eq!(code(&body), "UNAUTHENTICATED");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{body}"
    );

    // `alg: none`, no signature.
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({ "alg": "none", "typ": "JWT" }).to_string());
    let unsigned = format!("{header}.{forged_payload}.");
    assert_eq!(
        code(&api.gql(Some(&unsigned), ME, json!({})).await),
        "UNAUTHENTICATED"
    );

    // The refresh token is not an access token.
    assert_eq!(
        code(&api.gql(Some(&admin.refresh), ME, json!({})).await),
        "UNAUTHENTICATED"
    );
    // And nothing at all.
    assert_eq!(code(&api.gql(None, ME, json!({})).await), "UNAUTHENTICATED");
    api.stop().await;
}

#[tokio::test]
async fn login_is_rate_limited_per_account() {
    let deployment = Deployment::new(Sql::Sqlite, "auth-limit").await;
    let api = deployment.api(&["--login-attempts-per-minute=3"]).await;
    api.register("admin@example.com").await;
    let attempt = || {
        api.gql(
            None,
            "mutation { login(email: \"admin@example.com\", password: \"guess guess guess\") { accessToken } }",
            json!({}),
        )
    };
    for _ in 0..3 {
        assert_eq!(code(&attempt().await), "UNAUTHENTICATED");
    }
    let limited = attempt().await;
    assert_eq!(code(&limited), "RATE_LIMITED");
    let retry = limited["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .expect("retryAfterSeconds");
    assert!((1..=60).contains(&retry), "{limited}");
    // Even the right password waits: the limit counts attempts, not failures.
    let right = api
        .gql(
            None,
            "mutation($p: String!) { login(email: \"admin@example.com\", password: $p) { accessToken } }",
            json!({ "p": PASSWORD }),
        )
        .await;
    assert_eq!(code(&right), "RATE_LIMITED");
    api.stop().await;
}

#[tokio::test]
async fn each_role_gets_what_it_may_and_is_refused_the_rest() {
    let deployment = Deployment::new(Sql::Sqlite, "auth-roles").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    assert_eq!(team.operator.role, "OPERATOR");

    let submit = "mutation { submitJob(input: {kind: EVALUATE, payload: {sensor: \"nothing\"}, runAt: \"2099-01-01T00:00:00Z\"}) { job { id } } }";
    let create_sensor =
        "mutation { createSensor(input: {key: \"s1\", name: \"S1\", unit: \"C\"}) { id } }";
    let set_role = format!(
        "mutation {{ setUserRole(userId: \"{}\", role: ADMIN) {{ role }} }}",
        team.viewer.user_id
    );
    let requeue = "mutation { requeueDeadJob(id: \"nope\") { id } }";
    let audit = "{ auditLog { edges { node { action } } } }";

    // Viewer: reads, nothing else.
    api.ok(
        Some(&team.viewer.access),
        "{ queues { name } jobs { edges { cursor } } }",
        json!({}),
    )
    .await;
    for refused in [submit, create_sensor, set_role.as_str(), requeue, audit] {
        let body = api.gql(Some(&team.viewer.access), refused, json!({})).await;
        assert_eq!(code(&body), "FORBIDDEN", "viewer: {refused}: {body}");
    }
    // Operator: submits, but no admin actions.
    api.ok(Some(&team.operator.access), submit, json!({})).await;
    for refused in [create_sensor, set_role.as_str(), requeue, audit] {
        let body = api
            .gql(Some(&team.operator.access), refused, json!({}))
            .await;
        assert_eq!(code(&body), "FORBIDDEN", "operator: {refused}: {body}");
    }
    // Admin: everything; a missing id is NOT_FOUND, not FORBIDDEN.
    api.ok(Some(&team.admin.access), create_sensor, json!({}))
        .await;
    let body = api.gql(Some(&team.admin.access), requeue, json!({})).await;
    assert_eq!(code(&body), "NOT_FOUND");
    let promoted = api.ok(Some(&team.admin.access), &set_role, json!({})).await;
    assert_eq!(promoted["setUserRole"]["role"], "ADMIN");
    let log = api.ok(Some(&team.admin.access), audit, json!({})).await;
    let actions: Vec<&str> = log["auditLog"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["node"]["action"].as_str())
        .collect();
    assert!(actions.contains(&"user.set_role"), "{actions:?}");
    assert!(actions.contains(&"sensor.create"), "{actions:?}");

    // No one demotes the last admin... once the viewer was promoted there are two.
    let demote_self = format!(
        "mutation {{ setUserRole(userId: \"{}\", role: VIEWER) {{ role }} }}",
        team.admin.user_id
    );
    api.ok(Some(&team.admin.access), &demote_self, json!({}))
        .await;
    let last = api.login("viewer@example.com").await;
    let demote_last = format!(
        "mutation {{ setUserRole(userId: \"{}\", role: VIEWER) {{ role }} }}",
        last.user_id
    );
    let body = api.gql(Some(&last.access), &demote_last, json!({})).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    api.stop().await;
}

#[tokio::test]
async fn production_mode_refuses_the_default_secret() {
    use clap::Parser;
    let config = api::ApiConfig::parse_from(["api", "--mode=production", "--static-dir=/x"]);
    let config = api::ApiConfig {
        jwt_secret: api::config::DEFAULT_JWT_SECRET.into(),
        ..config
    };
    assert!(matches!(
        config.check(),
        Err(api::config::ConfigError::DefaultSecretInProduction)
    ));
    let short = api::ApiConfig {
        jwt_secret: "short".into(),
        ..config.clone()
    };
    assert!(matches!(
        short.check(),
        Err(api::config::ConfigError::ShortSecret(5))
    ));
    let good = api::ApiConfig {
        jwt_secret: JWT_SECRET.into(),
        ..config
    };
    assert!(good.check().is_ok());
}
