//! Schedules: jobs an operator wants made again and again, on a cron expression read in a time
//! zone. Definitions live in SQL (`schedules`); [`Scheduler`] makes their jobs, one per tick
//! however many processes run it and however often they restart (see its docs); [`manage`]
//! creates, edits, pauses and deletes them with the checks and audit the API and the command
//! line share.

pub mod manage;
mod scheduler;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::{
    Cron,
    parser::{CronParser, Seconds},
};
pub use scheduler::{Scheduler, SchedulerConfig, TickReport, database_now};

/// What a schedule does about ticks that passed while no scheduler ran (a deployment that was
/// down, a clock that jumped forward): a tick reached more than
/// [`SchedulerConfig::late_after`] after its time is missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Missed {
    /// Missed ticks make no job; the schedule goes on from the next tick.
    Skip,
    /// All the missed ticks together make one job, at once.
    CatchUpOnce,
}

impl Missed {
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::CatchUpOnce => "catch_up_once",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "skip" => Some(Missed::Skip),
            "catch_up_once" => Some(Missed::CatchUpOnce),
            _ => None,
        }
    }
}

/// The longest cron expression accepted.
pub const MAX_CRON_LEN: usize = 120;
/// The longest schedule name accepted.
pub const MAX_NAME_LEN: usize = 100;

/// A cron expression and the zone whose wall clock it reads.
#[derive(Debug, Clone)]
pub struct Timing {
    cron: Cron,
    zone: Tz,
}

/// Why a cron expression or a zone was refused: `field` is `cron` or `timeZone`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TimingError {
    pub field: &'static str,
    pub message: String,
}

impl Timing {
    /// Five fields (minute, hour, day of month, month, day of week; Sunday is 0 or 7) or six
    /// (seconds first), in `zone` (an IANA name such as `Europe/Berlin`, or `UTC`).
    pub fn parse(cron: &str, zone: &str) -> Result<Self, TimingError> {
        let refuse = |field, message: String| Err(TimingError { field, message });
        let cron = cron.trim();
        if cron.is_empty() || cron.len() > MAX_CRON_LEN {
            return refuse(
                "cron",
                format!("a cron expression has 1 to {MAX_CRON_LEN} characters"),
            );
        }
        let fields = cron.split_whitespace().count();
        if !(fields == 5 || fields == 6 || cron.starts_with('@')) {
            return refuse(
                "cron",
                format!(
                    "{fields} fields: a cron expression has five (minute hour day month weekday) or six (seconds first)"
                ),
            );
        }
        let parsed = match CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(cron)
        {
            Ok(parsed) => parsed,
            Err(e) => return refuse("cron", format!("{cron:?} is not a cron expression: {e}")),
        };
        let zone = match Tz::from_str(zone.trim()) {
            Ok(zone) => zone,
            Err(_) => {
                return refuse(
                    "timeZone",
                    format!(
                        "{zone:?} is not a known time zone (use an IANA name such as Europe/Berlin, or UTC)"
                    ),
                );
            }
        };
        let timing = Self { cron: parsed, zone };
        if timing.next_after(Utc::now()).is_none() {
            return refuse("cron", format!("{cron:?} never fires"));
        }
        Ok(timing)
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The first tick at or after `from`.
    pub fn next_from(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = from.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// A person's reading of the expression ("At 09:00 on Monday through Friday").
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_weekday_morning_in_berlin_fires_at_berlin_nine_across_the_dst_change() {
        let timing = Timing::parse("0 9 * * 1-5", "Europe/Berlin").expect("valid");
        // Friday 2026-03-27, after 09:00 CET: the next is Monday 30 March, 09:00 CEST (07:00 UTC).
        let after = Utc.with_ymd_and_hms(2026, 3, 27, 10, 0, 0).unwrap();
        assert_eq!(
            timing.next_after(after),
            Some(Utc.with_ymd_and_hms(2026, 3, 30, 7, 0, 0).unwrap())
        );
        let before = Utc.with_ymd_and_hms(2026, 3, 27, 7, 0, 0).unwrap();
        assert_eq!(
            timing.next_after(before),
            Some(Utc.with_ymd_and_hms(2026, 3, 27, 8, 0, 0).unwrap()),
            "CET is UTC+1"
        );
    }

    #[test]
    fn seconds_are_optional_and_a_tick_is_found_at_or_after_a_time() {
        let timing = Timing::parse("*/10 * * * * *", "UTC").expect("valid");
        let at = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 20).unwrap();
        assert_eq!(timing.next_from(at), Some(at));
        assert_eq!(
            timing.next_after(at),
            Some(Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 30).unwrap())
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_naming_the_field() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "* * * * * * * *",
            "every day",
            "0 0 31 2 *",
        ] {
            let e = Timing::parse(bad, "UTC").expect_err(bad);
            assert_eq!(e.field, "cron", "{bad}: {e}");
        }
        let e = Timing::parse("0 9 * * *", "Mars/Olympus").expect_err("zone");
        assert_eq!(e.field, "timeZone");
        assert!(e.message.contains("Mars/Olympus"), "{e}");
    }
}
