//! What each schedule rule has fired and run, so a restart neither fires a
//! time twice nor forgets a missed one.

use serde::Serialize;

use super::{Store, StoreError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ScheduleRow {
    pub last_fire_at: Option<i64>,
    pub last_run_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_success_job: Option<String>,
    pub armed_at: Option<i64>,
}

impl Store {
    /// The rule's row, created (armed at `now_ms`) on first sight.
    pub async fn arm_schedule(&self, rule: &str, now_ms: i64) -> Result<ScheduleRow, StoreError> {
        let rule = rule.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
            let rule = &rule;
            sqlx::query(
                    "INSERT INTO schedules (rule, armed_at) VALUES (?, ?) ON CONFLICT (rule) DO NOTHING",
                )
                .bind(rule)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                // Rows of a database from before `armed_at` existed.
                sqlx::query("UPDATE schedules SET armed_at = ? WHERE rule = ? AND armed_at IS NULL")
                    .bind(now_ms)
                    .bind(rule)
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query_as("SELECT last_fire_at, last_run_at, last_success_at, last_success_job, armed_at FROM schedules WHERE rule = ?")
                    .bind(rule)
                    .fetch_one(&mut *tx)
                    .await?;
                Ok(row)
            })
        })
        .await
    }

    pub async fn schedule(&self, rule: &str) -> Result<Option<ScheduleRow>, StoreError> {
        Ok(sqlx::query_as("SELECT last_fire_at, last_run_at, last_success_at, last_success_job, armed_at FROM schedules WHERE rule = ?")
            .bind(rule)
            .fetch_optional(&self.reader)
            .await?)
    }

    /// Notes that `fire_ms` was handled (run or deliberately skipped).
    pub async fn record_fire(&self, rule: &str, fire_ms: i64) -> Result<(), StoreError> {
        let rule = rule.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
            let rule = &rule;
            sqlx::query(
                    "UPDATE schedules SET last_fire_at = MAX(COALESCE(last_fire_at, 0), ?) WHERE rule = ?",
                )
                .bind(fire_ms)
                .bind(rule)
                .execute(&mut *tx)
                .await?;
                Ok(())
            })
        })
        .await
    }
}
