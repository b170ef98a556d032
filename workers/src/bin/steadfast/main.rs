//! `steadfast`: the operators' command line. It reads and changes what the servers hold,
//! through the same engine and database, with the same connection settings (`REDIS_URL`,
//! `STEADFAST_PREFIX`, `DATABASE_URL`). Tables for people, `--json` for scripts.
//!
//! Exit codes scripts can rely on: 0 done; 1 a dependency failed (Redis, the database); 2 bad
//! usage (clap's own); 3 nothing matched (an unknown job, queue, user or device); 4 refused
//! (a job not in a state the command needs, or a drain without `--yes`).

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The command line's whole configuration. Not `Debug`: its URLs may carry passwords.
#[derive(Parser)]
#[command(
    version,
    about = "Steadfast from the command line: queues, jobs, dead jobs, users, devices"
)]
pub(crate) struct Config {
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    pub redis_url: String,
    #[arg(
        long,
        env = "STEADFAST_PREFIX",
        default_value = "steadfast",
        global = true
    )]
    pub prefix: String,
    /// How many partitions the deployment's jobs are split into (as the API and workers use).
    #[arg(
        long,
        env = "REDIS_PARTITIONS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=i64::from(queue::MAX_PARTITIONS)),
        global = true
    )]
    pub redis_partitions: u16,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://steadfast.db?mode=rwc",
        global = true
    )]
    pub database_url: String,
    /// JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Every queue's counts, whether it is paused, and how long its next job has waited.
    Queues,
    /// The deployment's partitions: each one's hash tag and cluster slot, and the jobs it holds
    /// (all queues), to see how evenly they spread and which keys an autoscaler should watch.
    Partitions,
    /// Fences the partitions whose cluster slots lie in SLOTS before an operator moves those
    /// slots (`redis-cli --cluster reshard`): their calls wait and fetches pass over them until
    /// `unfence`, so a long move makes no client call fail. SLOTS: `a-b`, one slot, or `all`.
    Fence {
        #[arg(value_parser = parse_slots)]
        slots: std::ops::RangeInclusive<u16>,
    },
    /// Lifts the fence of the partitions whose slots lie in SLOTS, once their move is done.
    Unfence {
        #[arg(value_parser = parse_slots)]
        slots: std::ops::RangeInclusive<u16>,
    },
    /// Jobs from the ledger, newest first.
    Jobs {
        #[arg(long)]
        kind: Option<String>,
        /// QUEUED, SCHEDULED, RUNNING, RETRYING, SUCCEEDED, DEAD or CANCELLED.
        #[arg(long)]
        state: Option<String>,
        /// What the job is about: a sensor key, or `channel:<id>`.
        #[arg(long)]
        subject: Option<String>,
        /// The idempotency key as the job shows it (`api:` prefixes a submitter's own).
        #[arg(long)]
        key: Option<String>,
        /// Created at or after (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Created before (RFC 3339).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// One job: from Redis while it is live, else from the ledger.
    Job { id: String },
    /// Dead jobs grouped by error fingerprint.
    Dead {
        #[arg(long)]
        queue: Option<String>,
    },
    /// Requeues dead jobs: the ids given, or every dead job of `--queue` (with `--fingerprint`).
    Requeue {
        ids: Vec<String>,
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        fingerprint: Option<String>,
        /// Count what would be requeued; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Deletes dead jobs for good: the ids given, or every dead job of `--queue`.
    Discard {
        ids: Vec<String>,
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        fingerprint: Option<String>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Holds workers from leasing the queue's jobs (running ones finish; nothing is lost).
    Pause { queue: String },
    /// Lets workers lease the queue's jobs again.
    Resume { queue: String },
    /// Cancels every job waiting on the queue (needs `--yes`; `--dry-run` counts them).
    Drain {
        queue: String,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        dry_run: bool,
    },
    /// Shows the queue's limits, or replaces them with the ones given (`--clear`: none).
    /// Rates are `N/WINDOW`, e.g. `10/1s`, `500/1m`, `3/250ms`.
    Limits {
        queue: String,
        /// Jobs of the queue running at once, across all workers.
        #[arg(long)]
        concurrency: Option<u32>,
        /// Jobs of one limit key (a sensor, a channel) running at once.
        #[arg(long)]
        per_key_concurrency: Option<u32>,
        /// Jobs of the queue started per window.
        #[arg(long, value_parser = parse_rate)]
        rate: Option<queue::RateLimit>,
        /// Jobs of one limit key started per window.
        #[arg(long, value_parser = parse_rate)]
        per_key_rate: Option<queue::RateLimit>,
        /// Remove every limit.
        #[arg(long, conflicts_with_all = ["concurrency", "per_key_concurrency", "rate", "per_key_rate"])]
        clear: bool,
    },
    /// Recurring jobs: list them (the default), create, pause, resume, delete.
    Schedules {
        #[command(subcommand)]
        action: Option<ScheduleAction>,
    },
    /// Accounts: list them (the default), disable or enable one, change a role.
    Users {
        #[command(subcommand)]
        action: Option<UserAction>,
    },
    /// Device keys.
    Devices {
        #[command(subcommand)]
        action: DeviceAction,
    },
}

/// `N/WINDOW`: `10/1s`, `500/1m`, `3/250ms`, `1000/1h`.
fn parse_rate(raw: &str) -> Result<queue::RateLimit, String> {
    let (limit, window) = raw
        .split_once('/')
        .ok_or_else(|| format!("{raw:?} is not N/WINDOW (e.g. 10/1s)"))?;
    let limit: u32 = limit
        .trim()
        .parse()
        .map_err(|_| format!("{limit:?} is not a whole number of jobs"))?;
    let window = window.trim();
    let split = window
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{window:?} needs a unit: ms, s, m or h"))?;
    let (amount, unit) = window.split_at(split);
    let amount: u64 = amount
        .parse()
        .map_err(|_| format!("{window:?} is not a window (e.g. 1s, 250ms)"))?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => return Err(format!("unknown unit {other:?}: use ms, s, m or h")),
    };
    Ok(queue::RateLimit {
        limit,
        window: std::time::Duration::from_millis(amount.saturating_mul(millis)),
    })
}

#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleAction {
    /// Every schedule, with its next and last tick.
    List,
    /// A new schedule, running from its next tick.
    Create {
        name: String,
        /// Five fields (minute hour day month weekday) or six (seconds first), quoted.
        #[arg(long)]
        cron: String,
        /// An IANA zone (Europe/Berlin); default UTC.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        #[arg(long)]
        kind: String,
        /// The kind's payload, JSON.
        #[arg(long)]
        payload: String,
        /// What missed ticks make: none, or one job for all of them.
        #[arg(long, value_parser = ["skip", "catch_up_once"], default_value = "skip")]
        missed: String,
    },
    /// Changes a schedule: only the fields given; its next tick is worked out afresh.
    Edit {
        id: i64,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        cron: Option<String>,
        #[arg(long)]
        time_zone: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        payload: Option<String>,
        #[arg(long, value_parser = ["skip", "catch_up_once"])]
        missed: Option<String>,
    },
    /// Stops making jobs (the definition is kept).
    Pause { id: i64 },
    /// Makes jobs again from the next tick.
    Resume { id: i64 },
    /// Deletes the schedule; the jobs it made stay.
    Delete { id: i64 },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserAction {
    /// Every account, with its role and whether it is disabled.
    List,
    /// Stops the account signing in; its sessions end within a second (by id or email).
    Disable { user: String },
    /// Lets a disabled account sign in again (by id or email).
    Enable { user: String },
    /// Gives the account a role (by id or email). The last enabled admin keeps theirs.
    Role {
        user: String,
        #[arg(value_parser = entities::manage::users::ROLES)]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceAction {
    /// Every device, with its sensors' count and whether its key is revoked.
    List,
    /// Refuses the device's key from its next request on.
    Revoke { id: i64 },
}

/// Why a command did not do what it was asked, and the exit code that says so.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
}

impl CliError {
    fn code(&self) -> u8 {
        match self {
            CliError::Unavailable(_) => 1,
            CliError::NotFound(_) => 3,
            CliError::Refused(_) => 4,
        }
    }
}

impl From<queue::QueueError> for CliError {
    fn from(e: queue::QueueError) -> Self {
        CliError::Unavailable(format!("redis: {e}"))
    }
}

impl From<entities::manage::ManageError> for CliError {
    fn from(e: entities::manage::ManageError) -> Self {
        use entities::manage::ManageError;
        match e {
            ManageError::NotFound(what) => CliError::NotFound(what),
            ManageError::Stale { .. } | ManageError::Refused { .. } => {
                CliError::Refused(e.to_string())
            }
            ManageError::Db(e) => e.into(),
        }
    }
}

impl From<sea_orm::DbErr> for CliError {
    fn from(e: sea_orm::DbErr) -> Self {
        CliError::Unavailable(format!("database: {e}"))
    }
}

fn main() -> ExitCode {
    let config = Config::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("steadfast: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(&config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("steadfast: {e}");
            ExitCode::from(e.code())
        }
    }
}

/// A cluster slot range: `a-b`, one slot `a`, or `all`.
fn parse_slots(text: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    const LAST: u16 = 16_383;
    let slot = |s: &str| -> Result<u16, String> {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| *n <= LAST)
            .ok_or_else(|| format!("{s:?} is not a cluster slot (0 to {LAST})"))
    };
    if text == "all" {
        return Ok(0..=LAST);
    }
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (slot(lo)?, slot(hi)?),
        None => (slot(text)?, slot(text)?),
    };
    if lo > hi {
        return Err(format!("{text:?}: the first slot is after the last"));
    }
    Ok(lo..=hi)
}
