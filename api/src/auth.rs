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

/// Login attempts per account and per client address (in this process).
pub struct LoginLimits {
    per_account: Keyed,
    per_address: Keyed,
    clock: DefaultClock,
}

impl std::fmt::Debug for LoginLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimits").finish_non_exhaustive()
    }
}

impl LoginLimits {
    pub fn new(per_minute: u32) -> Self {
        let per_account = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let per_address =
            NonZeroU32::new(per_minute.max(1).saturating_mul(3)).unwrap_or(NonZeroU32::MIN);
        Self {
            per_account: RateLimiter::keyed(Quota::per_minute(per_account)),
            per_address: RateLimiter::keyed(Quota::per_minute(per_address)),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt; refuses it when the account or the address has used its share.
    pub fn check(&self, email: &str, address: &str) -> ApiResult<()> {
        for (limiter, key, what) in [
            (&self.per_address, address, "this address"),
            (&self.per_account, email, "this account"),
        ] {
            if let Err(not_until) = limiter.check_key(&key.to_owned()) {
                let wait = not_until.wait_time_from(self.clock.now());
                return Err(ApiError::rate_limited(
                    format!(
                        "too many login attempts for {what}; try again in {} s",
                        wait.as_secs() + 1
                    ),
                    wait.as_secs() + 1,
                ));
            }
            if limiter.len() > 100_000 {
                limiter.retain_recent();
            }
        }
        Ok(())
    }
}
