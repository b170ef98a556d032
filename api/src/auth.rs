//! Who is asking: passwords (argon2), access tokens (HS256 JWT, short-lived), refresh tokens
//! (random, stored hashed, single use, rotated in families), device API keys, roles, and the
//! login rate limits.

use std::{num::NonZeroU32, time::Duration};

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use base64::Engine as _;
use governor::{Quota, RateLimiter, clock::Clock, clock::DefaultClock};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

/// What a user may do; each role includes the ones below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, async_graphql::Enum, Serialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also submits and cancels jobs and acknowledges alerts.
    Operator,
    /// Also requeues and discards dead jobs, manages sensors, rules, channels, devices and roles.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "VIEWER",
            Role::Operator => "OPERATOR",
            Role::Admin => "ADMIN",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "VIEWER" => Some(Role::Viewer),
            "OPERATOR" => Some(Role::Operator),
            "ADMIN" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A verified caller: from an access token, for the token's lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: i64,
    pub role: Role,
    /// Unix seconds.
    pub expires_at: u64,
}

impl Session {
    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role; you are {}",
                role.as_str(),
                self.role.as_str()
            )))
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iat: u64,
    exp: u64,
    /// Only access tokens are JWTs; the field keeps any other token from passing as one.
    typ: String,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenKeys {
    pub fn new(secret: &str, access_ttl: Duration) -> Self {
        // Only HS256: a token that names another algorithm (`none` included) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            access_ttl,
        }
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    pub fn issue(&self, user_id: i64, role: Role) -> ApiResult<String> {
        let iat = unix_now();
        let claims = Claims {
            sub: user_id.to_string(),
            role: role.as_str().to_owned(),
            iat,
            exp: iat + self.access_ttl.as_secs(),
            typ: "access".into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    pub fn verify(&self, token: &str) -> Result<Session, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let claims = data.claims;
        let (Ok(user_id), Some(role), "access") = (
            claims.sub.parse::<i64>(),
            Role::parse(&claims.role),
            claims.typ.as_str(),
        ) else {
            return Err(TokenError::Invalid);
        };
        Ok(Session {
            user_id,
            role,
            expires_at: claims.exp,
        })
    }

    /// Reads `Bearer <token>`.
    pub fn verify_header(&self, value: &str) -> Result<Session, TokenError> {
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(TokenError::Invalid)?;
        self.verify(token.trim())
    }
}

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Valid once: refresh it.
    Expired,
    /// Tampered, signed with another key or algorithm (`none` included), or not a token.
    Invalid,
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired => {
                ApiError::unauthenticated("the access token expired; refresh it")
            }
            TokenError::Invalid => ApiError::unauthenticated(
                "the access token is not valid; send `Authorization: Bearer <access token>`",
            ),
        }
    }
}

/// Hashes a password with argon2id (off the async threads: it takes tens of milliseconds).
pub async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

pub async fn verify_password(password: String, hash: String) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(ApiError::internal)?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(ApiError::internal)?
}

/// A random secret (refresh token or device key) and the hash stored in its place. The secret
/// is 256 random bits, so a fast hash is enough: nobody can guess their way through it.
pub fn new_secret(prefix: &str) -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = secret_hash(&secret);
    (secret, hash)
}

pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn validate_email(email: &str) -> ApiResult<String> {
    reject_nul("email", email)?;
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(ApiError::bad_input(
            "email",
            "enter an email address like name@example.com",
        ))
    }
}

pub fn validate_password(password: &str) -> ApiResult<()> {
    reject_nul("password", password)?;
    let length = password.chars().count();
    if !(10..=256).contains(&length) {
        return Err(ApiError::bad_input(
            "password",
            "a password needs 10 to 256 characters",
        ));
    }
    Ok(())
}

type Keyed = RateLimiter<
    String,
    governor::state::keyed::DefaultKeyedStateStore<String>,
    DefaultClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;

/// What a limit protects; each has budgets of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    Login,
    Register,
}

impl Guarded {
    fn name(self) -> &'static str {
        match self {
            Guarded::Login => "login",
            Guarded::Register => "register",
        }
    }
}

/// Login and registration attempts per account and per client address, counted in Redis so
/// every API replica shares one budget. The keys are fixed-length hashes (an email is
/// validated and hashed before it names anything), so a caller cannot grow Redis with long
/// or many-shaped keys. When Redis does not answer, this process's own limiter counts instead:
/// an outage must not open the door to guessing.
pub struct AuthLimits {
    engine: queue::Engine,
    per_account: queue::RateLimit,
    per_address: queue::RateLimit,
    timeout: Duration,
    local_account: Keyed,
    local_address: Keyed,
    clock: DefaultClock,
}

impl std::fmt::Debug for AuthLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLimits")
            .field("per_account", &self.per_account)
            .field("per_address", &self.per_address)
            .finish_non_exhaustive()
    }
}

/// A short, fixed-length name for a caller-supplied value.
fn key_digest(value: &str) -> String {
    hex::encode(&Sha256::digest(value.as_bytes())[..16])
}

impl AuthLimits {
    pub fn new(engine: queue::Engine, per_minute: u32, timeout: Duration) -> Self {
        let per_minute = per_minute.max(1);
        let account = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let address = NonZeroU32::new(per_minute.saturating_mul(3)).unwrap_or(NonZeroU32::MIN);
        Self {
            engine,
            per_account: queue::RateLimit::per_minute(per_minute),
            per_address: queue::RateLimit::per_minute(per_minute.saturating_mul(3)),
            timeout,
            local_account: RateLimiter::keyed(Quota::per_minute(account)),
            local_address: RateLimiter::keyed(Quota::per_minute(address)),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt at `what`; refuses it when the address or the account (a validated,
    /// normalised email) has used its share.
    pub async fn check(&self, what: Guarded, email: &str, address: &str) -> ApiResult<()> {
        let checks = [
            (
                format!("auth:{}:addr:{}", what.name(), key_digest(address)),
                self.per_address,
                &self.local_address,
                "this address",
            ),
            (
                format!("auth:{}:acct:{}", what.name(), key_digest(email)),
                self.per_account,
                &self.local_account,
                "this account",
            ),
        ];
        for (key, budget, local, who) in checks {
            let decision =
                tokio::time::timeout(self.timeout, self.engine.rate_limit(&key, budget)).await;
            let wait = match decision {
                Ok(Ok(queue::RateDecision::Allowed { .. })) => continue,
                Ok(Ok(queue::RateDecision::Limited { retry_after })) => retry_after,
                Ok(Err(_)) | Err(_) => match local.check_key(&key) {
                    Ok(()) => {
                        if local.len() > 100_000 {
                            local.retain_recent();
                        }
                        continue;
                    }
                    Err(not_until) => not_until.wait_time_from(self.clock.now()),
                },
            };
            let seconds = wait.as_secs() + 1;
            return Err(ApiError::rate_limited(
                format!(
                    "too many {} attempts for {who}; try again in {seconds} s",
                    what.name()
                ),
                seconds,
            ));
        }
        Ok(())
    }
}

/// Compares secrets in time independent of where they differ.
pub fn secrets_match(given: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Rejects text a database or a log cannot carry faithfully: NUL characters (PostgreSQL
/// refuses them in text and JSON, and one such event once stopped the ledger).
pub fn reject_nul(field: &str, value: &str) -> ApiResult<()> {
    if value.contains('\0') {
        return Err(ApiError::bad_input(
            field,
            "must not contain NUL characters (\\u0000)",
        ));
    }
    Ok(())
}
