//! What each schedule rule has fired and run, so a restart neither fires a
//! time twice nor forgets a missed one.

use serde::Serialize;

use rusqlite::params;

use super::sql::Sql as _;
use super::{Store, StoreError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScheduleRow {
    pub last_fire_at: Option<i64>,
    pub last_run_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_success_job: Option<String>,
    pub armed_at: Option<i64>,
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ScheduleRow> {
    Ok(ScheduleRow {
        last_fire_at: row.get("last_fire_at")?,
        last_run_at: row.get("last_run_at")?,
        last_success_at: row.get("last_success_at")?,
        last_success_job: row.get("last_success_job")?,
        armed_at: row.get("armed_at")?,
    })
}

const ROW: &str = "SELECT last_fire_at, last_run_at, last_success_at, last_success_job, armed_at
                   FROM schedules WHERE rule = ?";

impl Store {
    /// The rule's row, created (armed at `now_ms`) on first sight.
    pub async fn arm_schedule(&self, rule: &str, now_ms: i64) -> Result<ScheduleRow, StoreError> {
        let rule = rule.to_owned();
        self.write(move |tx| {
            tx.exec(
                "INSERT INTO schedules (rule, armed_at) VALUES (?, ?) ON CONFLICT (rule) DO NOTHING",
                params![rule, now_ms],
            )?;
            // Rows of a database from before `armed_at` existed.
            tx.exec(
                "UPDATE schedules SET armed_at = ? WHERE rule = ? AND armed_at IS NULL",
                params![now_ms, rule],
            )?;
            Ok(tx.row_one(ROW, params![rule], from_row)?)
        })
        .await
    }

    pub async fn schedule(&self, rule: &str) -> Result<Option<ScheduleRow>, StoreError> {
        Ok(self.reader().await?.row_opt(ROW, params![rule], from_row)?)
    }

    /// Notes that `fire_ms` was handled (run or deliberately skipped).
    pub async fn record_fire(&self, rule: &str, fire_ms: i64) -> Result<(), StoreError> {
        let rule = rule.to_owned();
        self.write(move |tx| {
            tx.exec(
                "UPDATE schedules SET last_fire_at = MAX(COALESCE(last_fire_at, 0), ?) WHERE rule = ?",
                params![fire_ms, rule],
            )?;
            Ok(())
        })
        .await
    }
}
