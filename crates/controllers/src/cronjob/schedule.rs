//! CronJob schedule arithmetic, pure and clock-free: every function takes
//! `now`. Mirrors upstream's `mostRecentScheduleTime`, `nextScheduleTime` and
//! `nextScheduleTimeDuration` (pkg/controller/cronjob/utils.go), including the
//! guard that stops enumerating after 100 missed start times.
//!
//! Schedules are five-field cron expressions or `@yearly`-style macros (parsed
//! by `croner`, evaluated in the CronJob's time zone through `jiff`), or
//! `@every <duration>` as robfig/cron accepts it.

use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Upstream's `nextScheduleDelta`: requeue a little after the scheduled time.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// More missed start times than this are not enumerated (upstream's guard).
pub const TOO_MANY_MISSED: i64 = 100;

/// Why a schedule cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("unparseable schedule {schedule:?}: {reason}")]
    Unparseable { schedule: String, reason: String },
    #[error("time difference between two schedules is less than 1 second")]
    TooClose,
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron(Box<Cron>),
    /// `@every <duration>`: a constant delay, whole seconds, at least 1 s.
    Every(i64),
}

impl Schedule {
    /// Parse `spec.schedule` (admission has already checked its shape).
    pub fn parse(schedule: &str) -> Result<Schedule, ScheduleError> {
        let text = schedule.trim();
        let err = |reason: String| ScheduleError::Unparseable {
            schedule: schedule.to_string(),
            reason,
        };
        if text.contains("TZ") {
            return Err(err("TZ and CRON_TZ are not supported, use timeZone".into()));
        }
        if let Some(d) = text.strip_prefix("@every ") {
            let secs = parse_go_duration(d.trim()).ok_or_else(|| err("invalid duration".into()))?;
            return Ok(Schedule::Every(secs.max(1)));
        }
        // croner knows every robfig macro except @midnight.
        let text = if text.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            text
        };
        if !text.starts_with('@') && text.split_whitespace().count() != 5 {
            return Err(err("expected exactly 5 fields".into()));
        }
        CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map(|c| Schedule::Cron(Box::new(c)))
            .map_err(|e| err(e.to_string()))
    }

    /// The first activation strictly after `t`, at whole seconds (robfig's
    /// `Next`), or `None` if there is none (e.g. February 31st).
    pub fn next(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Schedule::Every(secs) => {
                let whole = Timestamp::from_second(t.as_second()).ok()?;
                whole.checked_add(SignedDuration::from_secs(*secs)).ok()
            }
            Schedule::Cron(c) => {
                let zoned = t.to_zoned(tz.clone());
                c.find_next_occurrence(&zoned, false)
                    .ok()
                    .map(|z| z.timestamp())
            }
        }
    }
}

/// `time.ParseDuration` for the units a schedule may use; whole seconds.
fn parse_go_duration(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut total_ms: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return None,
        };
        total_ms += n * factor;
        rest = &rest[unit_len..];
    }
    // robfig rounds the delay down to whole seconds (minimum one second).
    let secs = (total_ms / 1000.0).floor();
    if !secs.is_finite() || secs > 1e15 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    Some(secs as i64)
}

/// How many start times were missed since the earliest time considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    Many,
}

/// What `most_recent` found.
#[derive(Debug, Clone, PartialEq)]
pub struct Recent {
    pub earliest: Timestamp,
    pub most_recent: Option<Timestamp>,
    pub missed: Missed,
}

/// The CronJob fields the arithmetic reads.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub created: Timestamp,
    pub last_schedule: Option<Timestamp>,
    pub starting_deadline_seconds: Option<i64>,
}

fn add_secs(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(secs)).unwrap_or(t)
}

/// Upstream's `mostRecentScheduleTime`: the latest activation at or before
/// `now` since the last schedule (or creation), and how many were missed.
pub fn most_recent(
    times: Times,
    now: Timestamp,
    sched: &Schedule,
    tz: &TimeZone,
    include_starting_deadline: bool,
) -> Result<Recent, ScheduleError> {
    let mut earliest = times.last_schedule.unwrap_or(times.created);
    if include_starting_deadline {
        if let Some(d) = times.starting_deadline_seconds {
            let deadline = add_secs(now, -d);
            if deadline > earliest {
                earliest = deadline;
            }
        }
    }
    let none = |missed| Recent {
        earliest,
        most_recent: None,
        missed,
    };
    let Some(t1) = sched.next(earliest, tz) else {
        return Ok(none(Missed::None));
    };
    if now < t1 {
        return Ok(none(Missed::None));
    }
    let Some(t2) = sched.next(t1, tz) else {
        return Ok(Recent {
            earliest,
            most_recent: Some(t1),
            missed: Missed::Few,
        });
    };
    if now < t2 {
        return Ok(Recent {
            earliest,
            most_recent: Some(t1),
            missed: Missed::Few,
        });
    }
    let between = t2.duration_since(t1).as_secs();
    if between < 1 {
        return Err(ScheduleError::TooClose);
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    // Start one interval before the estimate and let the schedule find the
    // real activations (irregular schedules such as `30 6-16/4 * * 1-5`).
    let mut t = add_secs(t1, (missed - 2).saturating_mul(between));
    let mut most_recent = None;
    while let Some(n) = sched.next(t, tz) {
        if n > now {
            break;
        }
        most_recent = Some(n);
        t = n;
    }
    Ok(Recent {
        earliest,
        most_recent,
        missed: if missed > TOO_MANY_MISSED {
            Missed::Many
        } else {
            Missed::Few
        },
    })
}

/// Upstream's `nextScheduleTime`: the unmet activation to start now (honouring
/// startingDeadlineSeconds), if any, and whether too many were missed.
pub fn next_to_run(
    times: Times,
    now: Timestamp,
    sched: &Schedule,
    tz: &TimeZone,
) -> Result<(Option<Timestamp>, bool), ScheduleError> {
    let r = most_recent(times, now, sched, tz, true)?;
    match r.most_recent {
        Some(t) if t <= now => Ok((Some(t), r.missed == Missed::Many)),
        _ => Ok((None, false)),
    }
}

/// Upstream's `nextScheduleTimeDuration`: how long to wait before the next
/// activation after the most recent one (plus a small delta).
pub fn requeue_after(times: Times, now: Timestamp, sched: &Schedule, tz: &TimeZone) -> Duration {
    let base = match most_recent(times, now, sched, tz, false) {
        Err(_) => now,
        Ok(Recent {
            most_recent: Some(t),
            ..
        }) => t,
        Ok(Recent {
            most_recent: None,
            missed: Missed::None,
            earliest,
        }) => earliest,
        Ok(_) => now,
    };
    match sched.next(base, tz) {
        Some(next) if next > now => {
            Duration::try_from(next.duration_since(now)).unwrap_or_default() + NEXT_SCHEDULE_DELTA
        }
        Some(_) => NEXT_SCHEDULE_DELTA,
        // Never fires again: look again in a day (the spec may change).
        None => Duration::from_secs(24 * 3600),
    }
}

/// The name of the Job for the activation at `scheduled`:
/// `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// `scheduled` as RFC 3339 in `tz` (Go's `time.RFC3339`: `Z` for UTC), for the
/// `batch.kubernetes.io/cronjob-scheduled-timestamp` annotation.
pub fn rfc3339_in(scheduled: Timestamp, tz: &TimeZone) -> String {
    let z = scheduled.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn times(created: &str, last: Option<&str>, deadline: Option<i64>) -> Times {
        Times {
            created: ts(created),
            last_schedule: last.map(ts),
            starting_deadline_seconds: deadline,
        }
    }

    #[test]
    fn parses_fields_and_macros() {
        for ok in [
            "* * * * *",
            "*/5 1-3 * jan mon-fri",
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "@every 90s",
            "@every 1h30m",
        ] {
            assert!(Schedule::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "61 * * * *",
            "@often",
            "TZ=UTC * * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn next_is_strictly_after_at_whole_seconds() {
        let s = Schedule::parse("* * * * *").unwrap();
        let utc = TimeZone::UTC;
        assert_eq!(
            s.next(ts("2024-01-01T10:00:00Z"), &utc),
            Some(ts("2024-01-01T10:01:00Z"))
        );
        assert_eq!(
            s.next(ts("2024-01-01T10:00:30.5Z"), &utc),
            Some(ts("2024-01-01T10:01:00Z"))
        );
        let every = Schedule::parse("@every 90s").unwrap();
        assert_eq!(
            every.next(ts("2024-01-01T10:00:00.7Z"), &utc),
            Some(ts("2024-01-01T10:01:30Z"))
        );
        let hourly = Schedule::parse("@hourly").unwrap();
        assert_eq!(
            hourly.next(ts("2024-01-01T10:00:00Z"), &utc),
            Some(ts("2024-01-01T11:00:00Z"))
        );
    }

    #[test]
    fn time_zone_shifts_activations() {
        let s = Schedule::parse("0 9 * * *").unwrap();
        let paris = TimeZone::get("Europe/Paris").unwrap();
        // 09:00 in Paris in January is 08:00 UTC; in July 07:00 UTC.
        assert_eq!(
            s.next(ts("2024-01-15T00:00:00Z"), &paris),
            Some(ts("2024-01-15T08:00:00Z"))
        );
        assert_eq!(
            s.next(ts("2024-07-15T00:00:00Z"), &paris),
            Some(ts("2024-07-15T07:00:00Z"))
        );
        assert_eq!(
            rfc3339_in(ts("2024-01-15T08:00:00Z"), &paris),
            "2024-01-15T09:00:00+01:00"
        );
        assert_eq!(
            rfc3339_in(ts("2024-01-15T08:00:00Z"), &TimeZone::UTC),
            "2024-01-15T08:00:00Z"
        );
    }

    #[test]
    fn nothing_due_before_first_activation() {
        let s = Schedule::parse("*/10 * * * *").unwrap();
        let t = times("2024-01-01T10:01:00Z", None, None);
        let now = ts("2024-01-01T10:05:00Z");
        assert_eq!(next_to_run(t, now, &s, &TimeZone::UTC), Ok((None, false)));
        // Requeue at 10:10 (+ delta).
        assert_eq!(
            requeue_after(t, now, &s, &TimeZone::UTC),
            Duration::from_secs(300) + NEXT_SCHEDULE_DELTA
        );
    }

    #[test]
    fn due_activation_and_most_recent_of_several_missed() {
        let s = Schedule::parse("*/10 * * * *").unwrap();
        let utc = TimeZone::UTC;
        let t = times("2024-01-01T10:01:00Z", None, None);
        assert_eq!(
            next_to_run(t, ts("2024-01-01T10:10:05Z"), &s, &utc),
            Ok((Some(ts("2024-01-01T10:10:00Z")), false))
        );
        // Several missed: the most recent one runs.
        assert_eq!(
            next_to_run(t, ts("2024-01-01T10:45:00Z"), &s, &utc),
            Ok((Some(ts("2024-01-01T10:40:00Z")), false))
        );
        // Already scheduled at 10:40: nothing until 10:50.
        let done = times("2024-01-01T10:01:00Z", Some("2024-01-01T10:40:00Z"), None);
        assert_eq!(
            next_to_run(done, ts("2024-01-01T10:45:00Z"), &s, &utc),
            Ok((None, false))
        );
        assert_eq!(
            requeue_after(done, ts("2024-01-01T10:45:00Z"), &s, &utc),
            Duration::from_secs(300) + NEXT_SCHEDULE_DELTA
        );
    }

    #[test]
    fn starting_deadline_hides_old_activations() {
        let s = Schedule::parse("0 * * * *").unwrap();
        let utc = TimeZone::UTC;
        // The 10:00 run was missed; at 10:05 with a 60 s deadline it is too late.
        let t = times("2024-01-01T09:30:00Z", None, Some(60));
        assert_eq!(
            next_to_run(t, ts("2024-01-01T10:05:00Z"), &s, &utc),
            Ok((None, false))
        );
        // Within the deadline it runs.
        let t = times("2024-01-01T09:30:00Z", None, Some(600));
        assert_eq!(
            next_to_run(t, ts("2024-01-01T10:05:00Z"), &s, &utc),
            Ok((Some(ts("2024-01-01T10:00:00Z")), false))
        );
    }

    #[test]
    fn too_many_missed_is_flagged_but_most_recent_still_found() {
        let s = Schedule::parse("* * * * *").unwrap();
        let utc = TimeZone::UTC;
        let t = times("2024-01-01T00:00:00Z", None, None);
        let now = ts("2024-01-01T05:00:30Z");
        assert_eq!(
            next_to_run(t, now, &s, &utc),
            Ok((Some(ts("2024-01-01T05:00:00Z")), true))
        );
        // A deadline keeps the count small.
        let t = times("2024-01-01T00:00:00Z", None, Some(200));
        assert_eq!(
            next_to_run(t, now, &s, &utc),
            Ok((Some(ts("2024-01-01T05:00:00Z")), false))
        );
    }

    #[test]
    fn impossible_date_never_fires() {
        let s = Schedule::parse("59 23 31 2 *").unwrap();
        let t = times("2024-01-01T00:00:00Z", None, None);
        let now = ts("2024-03-01T00:00:00Z");
        assert_eq!(next_to_run(t, now, &s, &TimeZone::UTC), Ok((None, false)));
    }

    #[test]
    fn job_names_count_minutes() {
        assert_eq!(
            job_name("hello", ts("2024-01-01T00:00:00Z")),
            "hello-28401120"
        );
    }
}
