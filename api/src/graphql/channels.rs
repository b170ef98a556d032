//! Where notifications go: webhook or in-app channels, shown with their URL redacted to
//! anyone but admins. Creating, switching off and removing them are admin actions, audited. A
//! disabled channel's notify jobs complete without sending; a deleted channel's pending ones
//! die as "unknown channel", and its delivery history goes with it.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::{channels, deliveries, rule_channels};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::json;

use super::{
    check_version, page, require, row_id, row_or_not_found, sensors::check_text, shared,
    update_if_version,
};
use crate::{
    auth::Role,
    error::{ApiError, ApiResult},
};

// Mirrors the stored `entities::states::ChannelKind` (conversions both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::states::ChannelKind")]
pub enum ChannelKind {
    /// A signed POST (`X-Steadfast-Signature: sha256=<HMAC of the body>`).
    Webhook,
    /// Shown in the web app.
    InApp,
}

impl ChannelKind {
    fn name(self) -> &'static str {
        entities::states::ChannelKind::from(self).as_str()
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Channel {
    pub id: ID,
    pub name: String,
    pub kind: Option<ChannelKind>,
    /// The webhook's address. Admins see it whole; others see its scheme and host only
    /// (`https://hooks.example.com/…`): paths and queries often carry tokens.
    pub url: Option<String>,
    /// Whether webhooks are signed (the secret itself is never shown again).
    pub has_secret: bool,
    /// False once an admin disabled it: its notifications are skipped.
    pub enabled: bool,
    /// Raised by every edit; an edit names the version it read (`expectedVersion`).
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Channel {
    /// The channel as `viewer` may see it.
    pub fn view(c: channels::Model, viewer: Role) -> Self {
        let url = if viewer >= Role::Admin {
            c.url
        } else {
            c.url.as_deref().map(redacted_url)
        };
        Self {
            id: ID(c.id.to_string()),
            name: c.name,
            kind: entities::states::ChannelKind::parse(&c.kind).map(Into::into),
            url,
            has_secret: c.secret.is_some_and(|s| !s.is_empty()),
            enabled: c.disabled_at.is_none(),
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// `scheme://host[:port]/…`: no credentials, path or query.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "…".into();
    };
    let host = host_and_port(rest);
    let more = rest.len() > rest.split(['/', '?', '#']).next().unwrap_or_default().len();
    format!("{scheme}://{host}{}", if more { "/…" } else { "" })
}

/// `host[:port]` of what follows a URL's `scheme://`, without any `user:password@`.
fn host_and_port(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

#[derive(Default)]
pub struct ChannelQuery;

#[Object]
impl ChannelQuery {
    #[graphql(complexity = "page::list_complexity(page::expected::TOP_LEVEL, child_complexity)")]
    async fn channels(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Channel>> {
        let viewer = require(ctx, Role::Viewer)?;
        Ok(channels::Entity::find()
            .order_by_asc(channels::Column::Id)
            .limit(5000)
            .all(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|c| Channel::view(c, viewer.role))
            .collect())
    }
}

#[derive(Debug, Clone, InputObject)]
pub struct CreateChannelInput {
    pub name: String,
    pub kind: ChannelKind,
    /// For WEBHOOK: the `http(s)://` address POSTed to.
    pub url: Option<String>,
    /// For WEBHOOK: the HMAC key of `X-Steadfast-Signature`.
    pub secret: Option<String>,
}

/// Refuses a webhook whose host is an IP literal the workers would refuse (loopback, private,
/// link-local) now, rather than at its first delivery. Names are checked at send time, on
/// what they resolve to then.
pub fn check_destination(config: &crate::ApiConfig, url: &str) -> ApiResult<()> {
    let host = host_and_port(url.split_once("://").map_or(url, |(_, rest)| rest));
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let policy = workflows::jobs::notify::DestinationPolicy::allowing(
        config.pools.webhook_allow_networks.iter().copied(),
    );
    if let Some(reason) = host
        .parse::<std::net::IpAddr>()
        .ok()
        .and_then(|ip| policy.refusal(ip))
    {
        return Err(ApiError::bad_input("input.url", reason));
    }
    Ok(())
}

/// An absolute http(s) URL with a host, normalised; `None` otherwise.
fn reqwest_url(raw: &str) -> Option<String> {
    let (scheme, rest) = raw.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    if host.is_empty()
        || host.chars().any(char::is_whitespace)
        || raw.contains('\0')
        || raw.len() > 2048
    {
        return None;
    }
    Some(raw.to_owned())
}

/// A webhook address the workers may POST to, normalised.
fn check_url(config: &crate::ApiConfig, raw: &str) -> ApiResult<String> {
    let url = raw.trim();
    if url.is_empty() {
        return Err(ApiError::bad_input(
            "input.url",
            "a WEBHOOK channel needs a url",
        ));
    }
    let parsed = reqwest_url(url)
        .ok_or_else(|| ApiError::bad_input("input.url", "enter an http:// or https:// address"))?;
    check_destination(config, &parsed)?;
    Ok(parsed)
}

fn check_secret(secret: &str) -> ApiResult<String> {
    if secret.is_empty() {
        return Err(ApiError::bad_input(
            "input.secret",
            "a WEBHOOK channel needs a secret: the key of the HMAC signature receivers check",
        ));
    }
    crate::auth::reject_nul("input.secret", secret)?;
    if secret.len() > 512 {
        return Err(ApiError::bad_input("input.secret", "at most 512 bytes"));
    }
    Ok(secret.to_owned())
}

/// The fields to change; absent ones keep their value. `url` and `secret` are for webhooks
/// (a new secret rotates the signing key from the next delivery).
#[derive(Debug, Clone, Default, InputObject)]
pub struct UpdateChannelInput {
    pub name: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
}

/// The channel as the audit log keeps it: the URL redacted, the secret never.
fn audited(c: &channels::Model) -> serde_json::Value {
    json!({
        "name": c.name,
        "kind": c.kind,
        "url": c.url.as_deref().map(redacted_url),
        "enabled": c.disabled_at.is_none(),
        "version": c.version,
    })
}

#[derive(Default)]
pub struct ChannelMutation;

#[Object]
impl ChannelMutation {
    async fn create_channel(
        &self,
        ctx: &Context<'_>,
        input: CreateChannelInput,
    ) -> async_graphql::Result<Channel> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let name = check_text("input.name", &input.name, 200)?;
        let (url, secret) = match input.kind {
            ChannelKind::Webhook => {
                let url = check_url(
                    &shared.config,
                    input.url.as_deref().ok_or_else(|| {
                        ApiError::bad_input("input.url", "a WEBHOOK channel needs a url")
                    })?,
                )?;
                let secret = check_secret(input.secret.as_deref().unwrap_or_default())?;
                (Some(url), Some(secret))
            }
            ChannelKind::InApp => (None, None),
        };
        let channel = channels::ActiveModel {
            name: Set(name),
            kind: Set(input.kind.name().to_owned()),
            url: Set(url),
            secret: Set(secret),
            version: Set(1),
            updated_at: Set(None),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&shared.db)
        .await
        .map_err(ApiError::from)?;
        shared
            .audit(
                &shared.db,
                Some(admin.user_id),
                "channel.create",
                &format!("channel:{}", channel.id),
                json!({ "kind": channel.kind, "url": channel.url.as_deref().map(redacted_url) }),
            )
            .await?;
        Ok(Channel::view(channel, admin.role))
    }

    /// Renames a channel, moves its webhook or rotates its secret (admin). `expectedVersion`
    /// is the version the edit was made against: if the channel changed since, nothing is
    /// written (`CONFLICT`). Notifications already queued use the channel as it is when sent.
    async fn update_channel(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: i64,
        input: UpdateChannelInput,
    ) -> async_graphql::Result<Channel> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let name = input
            .name
            .as_deref()
            .map(|n| check_text("input.name", n, 200))
            .transpose()?;
        let txn = entities::begin_write(&shared.db)
            .await
            .map_err(ApiError::from)?;
        let before = row_or_not_found::<channels::Entity>(&txn, id, "channel").await?;
        check_version("channel", before.version, expected_version)?;
        let webhook =
            entities::states::ChannelKind::parse(&before.kind) == Some(ChannelKind::Webhook.into());
        if !webhook {
            for (field, given) in [("input.url", &input.url), ("input.secret", &input.secret)] {
                if given.is_some() {
                    return Err(ApiError::bad_input(field, "only a WEBHOOK channel has one").into());
                }
            }
        }
        let mut active: channels::ActiveModel = before.clone().into();
        if let Some(name) = name {
            active.name = Set(name);
        }
        if let Some(url) = &input.url {
            active.url = Set(Some(check_url(&shared.config, url)?));
        }
        if let Some(secret) = &input.secret {
            active.secret = Set(Some(check_secret(secret)?));
        }
        active.version = Set(expected_version + 1);
        active.updated_at = Set(Some(Utc::now()));
        let after = update_if_version(
            &txn,
            active,
            channels::Column::Version,
            expected_version,
            "channel",
        )
        .await?;
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                "channel.update",
                &format!("channel:{id}"),
                json!({
                    "before": audited(&before),
                    "after": audited(&after),
                    "secretRotated": input.secret.is_some(),
                }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(Channel::view(after, admin.role))
    }

    /// Disables a channel (its notifications are skipped, not sent) or enables it again.
    async fn set_channel_enabled(
        &self,
        ctx: &Context<'_>,
        id: ID,
        enabled: bool,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Channel> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let txn = entities::begin_write(&shared.db)
            .await
            .map_err(ApiError::from)?;
        let channel = row_or_not_found::<channels::Entity>(&txn, id, "channel").await?;
        if let Some(expected) = expected_version {
            check_version("channel", channel.version, expected)?;
        }
        let was_enabled = channel.disabled_at.is_none();
        let channel_version = channel.version;
        let mut active: channels::ActiveModel = channel.into();
        active.disabled_at = Set((!enabled).then(Utc::now));
        active.version = Set(channel_version + 1);
        active.updated_at = Set(Some(Utc::now()));
        let channel = update_if_version(
            &txn,
            active,
            channels::Column::Version,
            channel_version,
            "channel",
        )
        .await?;
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                if enabled {
                    "channel.enable"
                } else {
                    "channel.disable"
                },
                &format!("channel:{id}"),
                json!({ "name": channel.name, "wasEnabled": was_enabled }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(Channel::view(channel, admin.role))
    }

    /// Deletes a channel, its links to rules and its deliveries; answers whether it existed.
    /// `expectedVersion`, when given, refuses the delete (`CONFLICT`) if the channel was
    /// edited since it was read.
    async fn delete_channel(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<bool> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let txn = entities::begin_write(&shared.db)
            .await
            .map_err(ApiError::from)?;
        let Some(channel) = channels::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(ApiError::from)?
        else {
            return Ok(false);
        };
        if let Some(expected) = expected_version {
            check_version("channel", channel.version, expected)?;
        }
        let deliveries = deliveries::Entity::find()
            .filter(deliveries::Column::ChannelId.eq(id))
            .count(&txn)
            .await
            .map_err(ApiError::from)?;
        let rules: Vec<i64> = rule_channels::Entity::find()
            .filter(rule_channels::Column::ChannelId.eq(id))
            .all(&txn)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|l| l.rule_id)
            .collect();
        // Against the version read, so an edit that raced past the check is not deleted unseen.
        let gone = channels::Entity::delete_many()
            .filter(channels::Column::Id.eq(id))
            .filter(channels::Column::Version.eq(channel.version))
            .exec(&txn)
            .await
            .map_err(ApiError::from)?;
        if gone.rows_affected != 1 {
            return Err(ApiError::stale("channel", channel.version, None).into());
        }
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                "channel.delete",
                &format!("channel:{id}"),
                json!({
                    "name": channel.name,
                    "kind": channel.kind,
                    "url": channel.url.as_deref().map(redacted_url),
                    "rules": rules,
                    "deliveries": deliveries,
                }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(true)
    }
}
