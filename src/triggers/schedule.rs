//! Schedules (DESIGN §3 `on.schedule`): croner cron expressions in a rule's
//! IANA time zone → chat jobs at the right instants.
//!
//! The what-fires-when is pure ([`next_fire`], [`missed_fire`]): time is an
//! argument, so the DST policy and catch-up rules are tested without
//! sleeping. The task around it only sleeps and enqueues.
//!
//! DST policy (croner's, pinned by tests on the 2025 transitions):
//! a fixed time that does not exist (02:30 on a spring-forward night) runs
//! once at the first valid instant after the gap (03:00); a fixed time that
//! happens twice (01:30 on a fall-back night) runs once, at the first one.
//! Interval patterns (`*/15 * * * *`) keep their real-time rhythm through
//! both. Fire times are strictly increasing in UTC.
//!
//! Architecture invariant: a fire time becomes at most one job, ever — the
//! job's dedupe key is (rule, fire time), so a restart, a catch-up and the
//! regular loop can never double-fire.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use tokio_util::sync::CancellationToken;

use super::{Missed, Overlap, Queue, Schedule, TriggerEvent};

/// Parses classic 5-field crontab, or 6 fields with seconds first.
pub fn parse(expression: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|e| e.to_string())
}

/// The first fire time strictly after `after`.
pub fn next_fire<Z: TimeZone>(cron: &Cron, tz: &Z, after: DateTime<Utc>) -> Option<DateTime<Utc>>
where
    Z::Offset: Copy,
    DateTime<Z>: croner::CronDateTime,
{
    let local = after.with_timezone(tz);
    cron.find_next_occurrence(&local, false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The latest fire time in `(since, now]`, if any: what a `run_once`
/// catch-up runs after downtime (one run, however many were missed).
pub fn missed_fire<Z: TimeZone>(
    cron: &Cron,
    tz: &Z,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>>
where
    Z::Offset: Copy,
    DateTime<Z>: croner::CronDateTime,
{
    let first = next_fire(cron, tz, since)?;
    if first > now {
        return None;
    }
    let latest = cron
        .find_previous_occurrence(&now.with_timezone(tz), true)
        .ok()
        .map(|t| t.with_timezone(&Utc))?;
    Some(latest.max(first))
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Fires one schedule rule until `cancel`. Sleeps through the queue's
/// clock, so a test with a manual clock moves time instead of waiting.
pub async fn run(queue: Queue, rule: String, schedule: Schedule, cancel: CancellationToken) {
    let cron = match parse(&schedule.cron) {
        Ok(c) => c,
        Err(e) => {
            // `check` refuses such a rule; this is only a guard.
            tracing::error!(rule = %rule, error = e, "bad cron expression");
            return;
        }
    };
    let tz = schedule.timezone;
    let clock = queue.clock().clone();
    // `now` is read before the row is written: whoever sees the row armed
    // knows the timer's starting point is behind it.
    let (row, now) = loop {
        let now = clock.now();
        match queue.arm_schedule(&rule).await {
            Ok(row) => break (row, now),
            Err(e) => {
                tracing::error!(rule = %rule, error = %e, "cannot read the schedule's state");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        }
    };
    let since = from_ms(row.last_fire_at.or(row.armed_at).unwrap_or(ms(now)));
    let mut handled = now;
    if let Some(missed) = missed_fire(&cron, &tz, since, now) {
        match schedule.missed {
            Missed::RunOnce => {
                tracing::info!(rule = %rule, fire_time = %missed, "catching up a run missed while ferry was down");
                fire(&queue, &rule, schedule.overlap, missed, true).await;
            }
            Missed::Skip => {
                tracing::info!(rule = %rule, fire_time = %missed, "skipping runs missed while ferry was down (missed: skip)");
                let _ = queue.record_fire(&rule, ms(missed)).await;
            }
        }
        handled = handled.max(missed);
    }
    loop {
        let Some(next) = next_fire(&cron, &tz, handled) else {
            tracing::warn!(rule = %rule, "the schedule never fires again");
            return;
        };
        tokio::select! {
            _ = clock.sleep_until(ms(next)) => {}
            _ = cancel.cancelled() => return,
        }
        fire(&queue, &rule, schedule.overlap, next, false).await;
        handled = next;
    }
}

async fn fire(queue: &Queue, rule: &str, overlap: Overlap, at: DateTime<Utc>, catch_up: bool) {
    let at_ms = ms(at);
    if overlap == Overlap::Skip {
        match queue.active_jobs(rule).await {
            Ok(n) if n > 0 => {
                tracing::info!(rule = %rule, fire_time = %at, "skipped: the previous run is still going (overlap: skip)");
                let _ = queue.record_fire(rule, at_ms).await;
                return;
            }
            _ => {}
        }
    }
    let event = TriggerEvent::Fire {
        at,
        catch_up,
        coalesce: overlap == Overlap::Queue,
    };
    match queue.submit(rule, event).await {
        Ok(e) => {
            tracing::debug!(rule = %rule, job = %e.id, fire_time = %at, "fired");
        }
        Err(e) => {
            tracing::error!(rule = %rule, error = %e, "cannot enqueue the scheduled run")
        }
    }
    let _ = queue.record_fire(rule, at_ms).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Europe::Zurich};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires<Z: TimeZone>(expr: &str, tz: &Z, from: &str, n: usize) -> Vec<String>
    where
        Z::Offset: Copy,
        DateTime<Z>: croner::CronDateTime,
    {
        let cron = parse(expr).unwrap();
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = next_fire(&cron, tz, t).unwrap();
            out.push(t.to_rfc3339());
        }
        out
    }

    #[test]
    fn classic_crontab_and_seconds() {
        // 0 9 * * MON-FRI from a Saturday: Monday 09:00 Zurich (CET = UTC+1).
        assert_eq!(
            fires("0 9 * * MON-FRI", &Zurich, "2025-01-04T12:00:00Z", 2),
            ["2025-01-06T08:00:00+00:00", "2025-01-07T08:00:00+00:00"]
        );
        // `1` is Monday, as in crontab (not Quartz's Sunday).
        assert_eq!(
            fires("0 9 * * 1", &chrono_tz::UTC, "2025-01-04T00:00:00Z", 1),
            ["2025-01-06T09:00:00+00:00"]
        );
        assert_eq!(
            fires("*/2 * * * * *", &chrono_tz::UTC, "2025-01-01T00:00:01Z", 3),
            [
                "2025-01-01T00:00:02+00:00",
                "2025-01-01T00:00:04+00:00",
                "2025-01-01T00:00:06+00:00"
            ]
        );
        assert!(parse("61 * * * *").is_err());
        assert!(parse("* * *").is_err());
    }

    #[test]
    fn dst_gap_runs_once_at_the_first_valid_time() {
        // New York 2025-03-09: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
        assert_eq!(
            fires("30 2 * * *", &New_York, "2025-03-08T12:00:00Z", 3),
            [
                "2025-03-09T07:00:00+00:00", // 03:00 EDT, once
                "2025-03-10T06:30:00+00:00", // 02:30 EDT
                "2025-03-11T06:30:00+00:00"
            ]
        );
        // Zurich 2025-03-30: 02:00 CET jumps to 03:00 CEST.
        assert_eq!(
            fires("30 2 * * *", &Zurich, "2025-03-29T12:00:00Z", 2),
            ["2025-03-30T01:00:00+00:00", "2025-03-31T00:30:00+00:00"]
        );
    }

    #[test]
    fn dst_overlap_runs_a_fixed_time_once() {
        // New York 2025-11-02: 01:30 happens at 05:30Z (EDT) and 06:30Z (EST).
        assert_eq!(
            fires("30 1 * * *", &New_York, "2025-11-01T12:00:00Z", 2),
            ["2025-11-02T05:30:00+00:00", "2025-11-03T06:30:00+00:00"]
        );
        // Zurich 2025-10-26: 02:30 happens at 00:30Z (CEST) and 01:30Z (CET).
        assert_eq!(
            fires("30 2 * * *", &Zurich, "2025-10-25T12:00:00Z", 2),
            ["2025-10-26T00:30:00+00:00", "2025-10-27T01:30:00+00:00"]
        );
    }

    #[test]
    fn interval_patterns_keep_real_time_and_increase() {
        // Every 30 min across the New York fall-back: every real half hour.
        let got = fires("*/30 * * * *", &New_York, "2025-11-02T04:45:00Z", 5);
        assert_eq!(
            got,
            [
                "2025-11-02T05:00:00+00:00",
                "2025-11-02T05:30:00+00:00",
                "2025-11-02T06:00:00+00:00",
                "2025-11-02T06:30:00+00:00",
                "2025-11-02T07:00:00+00:00"
            ]
        );
        // Strictly increasing over a year of a daily fixed time, both zones.
        for tz in [New_York, Zurich] {
            let cron = parse("30 2 * * *").unwrap();
            let mut t = utc("2025-01-01T00:00:00Z");
            for _ in 0..366 {
                let n = next_fire(&cron, &tz, t).unwrap();
                assert!(n > t);
                assert!(
                    n - t <= chrono::Duration::hours(25),
                    "no day skipped: {t} → {n}"
                );
                t = n;
            }
        }
    }

    #[test]
    fn missed_fire_is_the_latest_one_or_none() {
        let cron = parse("*/2 * * * * *").unwrap();
        let tz = chrono_tz::UTC;
        // Down from :01 to :11 — five fire times missed, one catch-up: :10.
        assert_eq!(
            missed_fire(
                &cron,
                &tz,
                utc("2025-01-01T00:00:01Z"),
                utc("2025-01-01T00:00:11Z")
            ),
            Some(utc("2025-01-01T00:00:10Z"))
        );
        // Nothing due between.
        assert_eq!(
            missed_fire(
                &cron,
                &tz,
                utc("2025-01-01T00:00:02Z"),
                utc("2025-01-01T00:00:03Z")
            ),
            None
        );
        let daily = parse("0 9 * * *").unwrap();
        assert_eq!(
            missed_fire(
                &daily,
                &tz,
                utc("2025-01-01T09:00:00Z"),
                utc("2025-01-03T08:00:00Z")
            ),
            Some(utc("2025-01-02T09:00:00Z"))
        );
    }
}
