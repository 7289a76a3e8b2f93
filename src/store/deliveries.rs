//! The delivery outbox (DESIGN §5): rows are written in the transaction that
//! finishes the job producing them; the delivery loop claims them with a
//! lease, like jobs, and records every attempt.
//!
//! A delivery's id is its `webhook-id`: the same on every attempt and on a
//! redelivery, so a receiver can drop duplicates of at-least-once delivery.

use serde::Serialize;

use rusqlite::params;

use super::sql::{Conn, Sql as _};
use super::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivering,
    Delivered,
    Dead,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 4] = [
        DeliveryState::Pending,
        DeliveryState::Delivering,
        DeliveryState::Delivered,
        DeliveryState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivering => "delivering",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A delivery to write. `error` set means it is born `dead` (its body
/// template failed): kept visible, never sent.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub job_id: Option<String>,
    pub rule: String,
    pub destination: String,
    pub event_type: String,
    pub body: Vec<u8>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    pub job_id: Option<String>,
    pub rule: String,
    pub destination: String,
    pub event_type: String,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_response: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub delivered_at: Option<i64>,
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: row.get("id")?,
        job_id: row.get("job_id")?,
        rule: row.get("rule")?,
        destination: row.get("destination")?,
        event_type: row.get("event_type")?,
        body: row.get("body")?,
        state: super::sql::parsed(row, "state", DeliveryState::parse)?,
        attempts: row.get("attempts")?,
        next_attempt_at: row.get("next_attempt_at")?,
        last_status: row.get("last_status")?,
        last_error: row.get("last_error")?,
        last_response: row.get("last_response")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        delivered_at: row.get("delivered_at")?,
    })
}

/// How one attempt went, and what follows from it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The response body, already cut to the stored maximum.
    pub response: Option<String>,
    pub next: AttemptNext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptNext {
    Delivered,
    RetryAt(i64),
    Dead,
}

/// One try at sending a delivery, as recorded.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: Option<i64>,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<i64>,
    pub error: Option<String>,
    /// The start of the receiver's answer (bounded when recorded).
    pub response: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub rule: Option<String>,
    pub limit: Option<i64>,
}

/// Claims the deliveries `due` selects (its `?1`, `?2`, `?3` are `args`)
/// in two statements whatever their number: one row of JSON with them all,
/// then one update of them all (sqlx hands every result row across
/// threads one by one: a claim of 50 rows cost 50 round trips). The
/// writer's transaction holds the write lock between the two.
fn claim_in(
    tx: &Conn,
    due: &str,
    args: (String, i64, i64),
    owner: &str,
    lease_until: i64,
    now_ms: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let select = format!(
        "SELECT json_group_array(json_object(
            'id', id, 'job_id', job_id, 'rule', rule, 'destination', destination,
            'event_type', event_type, 'body', hex(body), 'attempts', attempts + 1,
            'next_attempt_at', next_attempt_at, 'last_status', last_status,
            'last_error', last_error, 'last_response', last_response,
            'created_at', created_at, 'delivered_at', delivered_at))
         FROM (SELECT * FROM deliveries WHERE {due})"
    );
    let claimed: String = tx.one(&select, params![&args.0, args.1, args.2])?;
    #[derive(serde::Deserialize)]
    struct Claimed {
        id: String,
        job_id: Option<String>,
        rule: String,
        destination: String,
        event_type: String,
        body: String,
        attempts: i64,
        next_attempt_at: i64,
        last_status: Option<i64>,
        last_error: Option<String>,
        last_response: Option<String>,
        created_at: i64,
        delivered_at: Option<i64>,
    }
    let rows: Vec<Claimed> = serde_json::from_str(&claimed)
        .map_err(|e| StoreError::Corrupt(format!("claimed deliveries: {e}")))?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = rows.iter().map(|c| c.id.as_str()).collect();
    tx.exec(
        "UPDATE deliveries SET state = 'delivering', lease_owner = ?1, lease_until = ?2,
                attempts = attempts + 1, updated_at = ?3
         WHERE id IN (SELECT value FROM json_each(?4))",
        params![
            owner,
            lease_until,
            now_ms,
            serde_json::to_string(&ids).unwrap_or_default()
        ],
    )?;
    rows.into_iter()
        .map(|c| {
            Ok(Delivery {
                body: hex::decode(&c.body)
                    .map_err(|e| StoreError::Corrupt(format!("delivery body: {e}")))?,
                id: c.id,
                job_id: c.job_id,
                rule: c.rule,
                destination: c.destination,
                event_type: c.event_type,
                state: DeliveryState::Delivering,
                attempts: c.attempts,
                next_attempt_at: c.next_attempt_at,
                last_status: c.last_status,
                last_error: c.last_error,
                last_response: c.last_response,
                created_at: c.created_at,
                updated_at: now_ms,
                delivered_at: c.delivered_at,
            })
        })
        .collect()
}

pub(super) fn insert(tx: &Conn, deliveries: &[NewDelivery], now_ms: i64) -> Result<(), StoreError> {
    for d in deliveries {
        tx.exec(
            "INSERT INTO deliveries (id, job_id, rule, destination, event_type, body, state,
                                     next_attempt_at, last_error, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO NOTHING",
            params![
                &d.id,
                &d.job_id,
                &d.rule,
                &d.destination,
                &d.event_type,
                &d.body,
                if d.error.is_some() { "dead" } else { "pending" },
                now_ms,
                &d.error,
                now_ms,
                now_ms
            ],
        )?;
    }
    Ok(())
}

impl Store {
    /// Writes deliveries outside a job (tests, tools).
    pub async fn insert_deliveries(
        &self,
        deliveries: &[NewDelivery],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let deliveries = deliveries.to_owned();
        self.write(move |tx| {
            insert(tx, &deliveries, now_ms)?;
            Ok(())
        })
        .await
    }

    /// Claims due deliveries in one transaction: for each destination at
    /// most its free slots (`rooms`), so one slow receiver fills only its
    /// own; rows for destinations missing from the config (`known`) up to
    /// `unknown_room`, so they can be closed with a clear error.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        rooms: &[(String, i64)],
        unknown_room: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let owner = owner.to_owned();
        let rooms = rooms.to_owned();
        let lease_until = now_ms + lease_ms;
        self.write(move |tx| {

                let mut out = Vec::new();
                let due = "destination = ?1 AND state = 'pending' AND next_attempt_at <= ?2
                           ORDER BY next_attempt_at LIMIT ?3";
                for (destination, room) in rooms.iter().filter(|(_, r)| *r > 0) {
                    let args = (destination.clone(), now_ms, *room);
                    out.extend(claim_in(tx, due, args, &owner, lease_until, now_ms)?);
                }
                if unknown_room > 0 {
                    // The destinations the table names, one index seek
                    // each: asking for due rows whose destination is not
                    // known instead scans every due row, and a backlog of
                    // 20,000 made each claim cost 2 ms.
                    let named: Vec<String> = tx.all(
                        "WITH RECURSIVE d(name) AS (
                             SELECT MIN(destination) FROM deliveries
                             UNION ALL
                             SELECT (SELECT MIN(destination) FROM deliveries WHERE destination > d.name)
                             FROM d WHERE d.name IS NOT NULL)
                         SELECT name FROM d WHERE name IS NOT NULL",
                    [], |r| r.get(0))?;
                    let mut room = unknown_room;
                    for destination in named
                        .into_iter()
                        .filter(|n| !rooms.iter().any(|(d, _)| d == n))
                    {
                        if room == 0 {
                            break;
                        }
                        let args = (destination, now_ms, room);
                        let claimed = claim_in(tx, due, args, &owner, lease_until, now_ms)?;
                        room -= claimed.len() as i64;
                        out.extend(claimed);
                    }
                }
                Ok(out)

        })
        .await
    }

    /// Records attempts (many at once: one commit for a batch of answers),
    /// each fenced by the lease holder. Returns how many were accepted.
    pub async fn record_attempts(
        &self,
        owner: &str,
        records: &[(String, AttemptRecord)],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        // The batch travels as one JSON parameter, so a batch of any size
        // is two statements (each a round trip to SQLite's thread), not two
        // per delivery.
        let rows: Vec<serde_json::Value> = records
            .iter()
            .map(|(id, r)| {
                let (state, next_at, delivered_at) = match r.next {
                    AttemptNext::Delivered => ("delivered", now_ms, Some(now_ms)),
                    AttemptNext::RetryAt(at) => ("pending", at, None),
                    AttemptNext::Dead => ("dead", now_ms, None),
                };
                serde_json::json!({
                    "id": id, "state": state, "next_at": next_at, "delivered_at": delivered_at,
                    "status": r.status, "error": r.error, "response": r.response,
                    "started_at": r.started_at, "duration_ms": r.duration_ms,
                })
            })
            .collect();
        let batch = serde_json::Value::Array(rows).to_string();
        let owner = owner.to_owned();
        self.write(move |tx| {

                // Only outcomes of deliveries this process still holds
                // (fencing): the attempt first, then the row.
                // The batch, parsed once; deliveries found by id (`+` keeps
                // the planner off the lease index, which would scan every
                // leased row for each outcome).
                let rows = "WITH r AS MATERIALIZED (
                    SELECT value->>'id' AS id, value->>'state' AS state, value->>'next_at' AS next_at,
                           value->>'delivered_at' AS delivered_at, value->>'status' AS status,
                           value->>'error' AS error, value->>'response' AS response,
                           value->>'started_at' AS started_at, value->>'duration_ms' AS duration_ms
                    FROM json_each(?1)) ";
                tx.exec(&format!(
                    "{rows} INSERT INTO delivery_attempts
                            (delivery_id, attempt, started_at, duration_ms, status, error, response)
                     SELECT r.id, (SELECT COALESCE(MAX(a.attempt), 0) + 1 FROM delivery_attempts a
                                    WHERE a.delivery_id = r.id),
                            r.started_at, r.duration_ms, r.status, r.error, r.response
                     FROM r JOIN deliveries d ON d.id = r.id
                     WHERE +d.lease_owner = ?2 AND +d.state = 'delivering'"
                ), params![&batch, &owner])?;
                let done = tx.exec(&format!(
                    "{rows} UPDATE deliveries SET state = r.state, next_attempt_at = r.next_at,
                            delivered_at = r.delivered_at, lease_owner = NULL, lease_until = NULL,
                            last_status = r.status, last_error = r.error, last_response = r.response,
                            updated_at = ?3
                     FROM r
                     WHERE deliveries.id = r.id AND +deliveries.lease_owner = ?2
                       AND +deliveries.state = 'delivering'"
                ), params![&batch, &owner, now_ms])?;
                Ok(done as usize)

        })
        .await
    }

    /// Gives claimed deliveries back untouched (shutdown), attempt refunded.
    pub async fn release_deliveries(&self, owner: &str, now_ms: i64) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        self.write(move |tx| {

            let done = tx.exec(
                    "UPDATE deliveries SET state = 'pending', lease_owner = NULL, lease_until = NULL,
                            attempts = attempts - 1, updated_at = ? WHERE lease_owner = ? AND state = 'delivering'",
                params![now_ms, owner])?;
                Ok(done as u64)

        })
        .await
    }

    /// Deliveries a crashed process held, or whose lease ran out: pending
    /// again (the attempt stays counted: it may have reached the receiver).
    pub async fn rescue_deliveries(
        &self,
        expired_before: Option<i64>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        self.write(move |tx| {

            let done = tx.exec(
                    "UPDATE deliveries SET state = 'pending', lease_owner = NULL, lease_until = NULL, updated_at = ?1
                     WHERE state = 'delivering' AND (?2 IS NULL OR lease_until < ?2)",
                params![now_ms, expired_before])?;
                Ok(done as u64)

        })
        .await
    }

    /// A new series of attempts for a delivery (same id, so the same
    /// `webhook-id`). False when there is no such delivery or it is being
    /// sent right now.
    pub async fn redeliver(&self, id: &str, now_ms: i64) -> Result<Option<bool>, StoreError> {
        let id = id.to_owned();
        self.write(move |tx| {

            let state: Option<String> = tx.opt("SELECT state FROM deliveries WHERE id = ?", params![id])?;
                let Some(state) = state else {
                    return Ok(None);
                };
                if state == "delivering" {
                    return Ok(Some(false));
                }
                tx.exec(
                    "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, delivered_at = NULL,
                            updated_at = ? WHERE id = ?",
                params![now_ms, now_ms, id])?;
                Ok(Some(true))

        })
        .await
    }

    pub async fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        Ok(self.reader().await?.row_opt(
            "SELECT * FROM deliveries WHERE id = ?",
            params![id],
            from_row,
        )?)
    }

    pub async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        let sql = format!(
            "SELECT * FROM deliveries WHERE {} ORDER BY created_at DESC LIMIT ?3",
            super::where_given(&[
                ("state", filter.state.is_some()),
                ("rule", filter.rule.is_some())
            ])
        );
        let filter = filter.clone();
        self.read_apart(move |c| {
            c.all(
                &sql,
                params![
                    filter.state.map(DeliveryState::as_str),
                    filter.rule.as_deref(),
                    filter.limit.unwrap_or(i64::MAX)
                ],
                from_row,
            )
        })
        .await
    }

    /// Every attempt of a delivery, first first.
    pub async fn delivery_attempts(&self, id: &str) -> Result<Vec<Attempt>, StoreError> {
        Ok(self.reader().await?.all(
            "SELECT attempt, started_at, duration_ms, status, error, response
             FROM delivery_attempts WHERE delivery_id = ? ORDER BY attempt",
            params![id],
            |r| {
                Ok(Attempt {
                    attempt: r.get(0)?,
                    started_at: r.get(1)?,
                    duration_ms: r.get(2)?,
                    status: r.get(3)?,
                    error: r.get(4)?,
                    response: r.get(5)?,
                })
            },
        )?)
    }

    pub async fn delivery_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(self.reader().await?.all(
            "SELECT state, COUNT(*) FROM deliveries GROUP BY state ORDER BY state",
            [],
            super::sql::tuple,
        )?)
    }

    /// The earliest time a pending delivery is due.
    pub async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.reader().await?.one(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending'",
            [],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn new(id: &str, dest: &str) -> NewDelivery {
        NewDelivery {
            id: id.into(),
            job_id: None,
            rule: "r".into(),
            destination: dest.into(),
            event_type: "chat.completed".into(),
            body: b"{}".to_vec(),
            error: None,
        }
    }

    #[tokio::test]
    async fn claims_respect_per_destination_room_and_fence_records() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("d.db")).await.unwrap();
        let mut all: Vec<NewDelivery> = (0..5).map(|i| new(&format!("slow{i}"), "slow")).collect();
        all.extend((0..3).map(|i| new(&format!("fast{i}"), "fast")));
        s.insert_deliveries(&all, 0).await.unwrap();
        // The slow receiver has one free slot; the others two.
        let rooms = vec![("slow".to_string(), 1), ("fast".to_string(), 2)];
        let got = s.claim_deliveries("me", 1, 1000, &rooms, 0).await.unwrap();
        let slow = got.iter().filter(|d| d.destination == "slow").count();
        let fast = got.iter().filter(|d| d.destination == "fast").count();
        assert_eq!((slow, fast), (1, 2));
        assert!(got.iter().all(|d| d.attempts == 1));
        let rec = |next| AttemptRecord {
            started_at: 1,
            duration_ms: 3,
            status: Some(200),
            error: None,
            response: Some("ok".into()),
            next,
        };
        let id = got[0].id.clone();
        assert_eq!(
            s.record_attempts(
                "someone-else",
                &[(id.clone(), rec(AttemptNext::Delivered))],
                2
            )
            .await
            .unwrap(),
            0,
            "only the lease holder records"
        );
        assert_eq!(
            s.record_attempts("me", &[(id.clone(), rec(AttemptNext::Delivered))], 2)
                .await
                .unwrap(),
            1
        );
        let d = s.delivery(&id).await.unwrap().unwrap();
        assert_eq!(d.state, DeliveryState::Delivered);
        // Redelivery: same id, fresh attempts, due again.
        assert_eq!(s.redeliver(&id, 5).await.unwrap(), Some(true));
        let rooms = vec![("slow".to_string(), 8), ("fast".to_string(), 8)];
        let again = s.claim_deliveries("me", 5, 1000, &rooms, 0).await.unwrap();
        assert!(again.iter().any(|d| d.id == id && d.attempts == 1));
        s.record_attempts("me", &[(id.clone(), rec(AttemptNext::Dead))], 6)
            .await
            .unwrap();
        assert_eq!(s.delivery_attempts(&id).await.unwrap().len(), 2);
        // A destination no longer in the config is claimed too (to be
        // closed with a clear error), but only when asked for.
        s.insert_deliveries(&[new("lost", "removed-from-config")], 8)
            .await
            .unwrap();
        assert!(
            s.claim_deliveries("me", 9, 1000, &rooms, 0)
                .await
                .unwrap()
                .is_empty()
        );
        let lost = s.claim_deliveries("me", 9, 1000, &rooms, 4).await.unwrap();
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].destination, "removed-from-config");
        // Several unknown destinations share the room between them.
        s.insert_deliveries(
            &[
                new("g1", "gone-a"),
                new("g2", "gone-a"),
                new("g3", "gone-b"),
            ],
            8,
        )
        .await
        .unwrap();
        let some = s.claim_deliveries("me", 9, 1000, &rooms, 2).await.unwrap();
        assert_eq!(some.len(), 2, "no more than the room");
        let rest = s.claim_deliveries("me", 9, 1000, &rooms, 4).await.unwrap();
        let mut ids: Vec<&str> = some.iter().chain(&rest).map(|d| d.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["g1", "g2", "g3"]);
        // Still held: two of the first claim, all but one of the second,
        // the lost one and the three gone ones.
        assert_eq!(
            s.release_deliveries("me", 7).await.unwrap() as usize,
            2 + again.len() - 1 + 1 + 3
        );
    }
}
