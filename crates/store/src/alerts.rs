//! Alerts and their deliveries: what the notifier decided about an event
//! (one alert per event, throttled or not) and, per channel, every attempt
//! to deliver it. A notifier claims a due delivery by moving its
//! `next_attempt_at` forward, so one delivery is never sent by two
//! notifiers at once, and one whose notifier died becomes due again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::events::{self, EventRecord};
use crate::schema::{alerts, deliveries, events as event_rows};
use crate::{Error, Result};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alerts)]
pub struct AlertRow {
    pub id: i64,
    pub event_id: String,
    pub throttle_key: String,
    pub throttled: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deliveries)]
pub struct DeliveryRow {
    pub id: i64,
    pub alert_id: i64,
    pub rule: i32,
    pub channel: String,
    pub target: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A channel an alert goes to.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub rule: i32,
    pub channel: String,
    pub target: String,
}

/// What the notifier asks for when an event matched rules.
#[derive(Debug, Clone)]
pub struct OpenAlert {
    pub event_id: String,
    pub throttle_key: String,
    /// Rollbacks, deploy timeouts and recoveries go out regardless.
    pub bypass_throttle: bool,
    pub window: Duration,
    pub channels: Vec<NewDelivery>,
}

/// A delivery handed to a notifier, with its alert's event.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery: DeliveryRow,
    pub event: EventRecord,
}

/// What opening an alert came to.
#[derive(Debug, Clone)]
pub struct Opened {
    pub alert: AlertRow,
    /// False when the event had its alert already (a repeated message).
    pub created: bool,
    /// The new deliveries, claimed for the caller until `claim_until`.
    pub deliveries: Vec<Claimed>,
}

/// Records the alert of an event, once: throttled when one with the same
/// key was sent within the window, else with a pending delivery per channel,
/// claimed for the caller until `claim_until`.
pub fn open(
    conn: &mut PgConnection,
    req: &OpenAlert,
    claim_until: DateTime<Utc>,
) -> Result<Opened> {
    conn.transaction(|conn| {
        // Alerts of one key are decided one at a time, so two repeats
        // arriving together cannot both pass the throttle.
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind::<diesel::sql_types::Text, _>(&req.throttle_key)
            .execute(conn)?;
        if let Some(alert) = alerts::table
            .filter(alerts::event_id.eq(&req.event_id))
            .select(AlertRow::as_select())
            .first(conn)
            .optional()?
        {
            return Ok(Opened {
                alert,
                created: false,
                deliveries: Vec::new(),
            });
        }
        let event = events::by_ids(conn, std::slice::from_ref(&req.event_id))?
            .pop()
            .ok_or(Error::NotFound)?;
        let last_sent: Option<DateTime<Utc>> = alerts::table
            .filter(alerts::throttle_key.eq(&req.throttle_key))
            .filter(alerts::throttled.eq(false))
            .select(diesel::dsl::max(alerts::created_at))
            .first(conn)?;
        let now = Utc::now();
        let since = last_sent.map(|at| (now - at).to_std().unwrap_or(Duration::ZERO));
        let throttled = domain::alert::throttled(req.bypass_throttle, since, req.window);
        let alert: AlertRow = diesel::insert_into(alerts::table)
            .values((
                alerts::event_id.eq(&req.event_id),
                alerts::throttle_key.eq(&req.throttle_key),
                alerts::throttled.eq(throttled),
            ))
            .returning(AlertRow::as_returning())
            .get_result(conn)?;
        let mut claimed = Vec::new();
        if !throttled {
            for c in &req.channels {
                let delivery: DeliveryRow = diesel::insert_into(deliveries::table)
                    .values((
                        deliveries::alert_id.eq(alert.id),
                        deliveries::rule.eq(c.rule),
                        deliveries::channel.eq(&c.channel),
                        deliveries::target.eq(&c.target),
                        deliveries::status.eq(PENDING),
                        deliveries::next_attempt_at.eq(claim_until),
                    ))
                    .returning(DeliveryRow::as_returning())
                    .get_result(conn)?;
                claimed.push(Claimed {
                    delivery,
                    event: event.clone(),
                });
            }
        }
        Ok(Opened {
            alert,
            created: true,
            deliveries: claimed,
        })
    })
}

/// Claims up to `limit` deliveries due by now, until `claim_until`.
pub fn claim_due(
    conn: &mut PgConnection,
    limit: i64,
    claim_until: DateTime<Utc>,
) -> Result<Vec<Claimed>> {
    conn.transaction(|conn| {
        let due: Vec<DeliveryRow> = deliveries::table
            .filter(deliveries::status.eq(PENDING))
            .filter(deliveries::next_attempt_at.le(Utc::now()))
            .order(deliveries::next_attempt_at.asc())
            .limit(limit)
            .for_update()
            .skip_locked()
            .select(DeliveryRow::as_select())
            .load(conn)?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = due.iter().map(|d| d.id).collect();
        diesel::update(deliveries::table.filter(deliveries::id.eq_any(&ids)))
            .set(deliveries::next_attempt_at.eq(claim_until))
            .execute(conn)?;
        let alert_events: Vec<(i64, String)> = alerts::table
            .filter(alerts::id.eq_any(due.iter().map(|d| d.alert_id)))
            .select((alerts::id, alerts::event_id))
            .load(conn)?;
        let event_ids: Vec<String> = alert_events.iter().map(|(_, e)| e.clone()).collect();
        let records = events::by_ids(conn, &event_ids)?;
        let mut out = Vec::with_capacity(due.len());
        for delivery in due {
            let event = alert_events
                .iter()
                .find(|(a, _)| *a == delivery.alert_id)
                .and_then(|(_, e)| records.iter().find(|r| &r.id == e))
                .cloned()
                .ok_or_else(|| Error::Corrupt(format!("delivery {} has no event", delivery.id)))?;
            out.push(Claimed { delivery, event });
        }
        Ok(out)
    })
}

/// How one attempt went.
#[derive(Debug, Clone)]
pub enum Attempt {
    Delivered,
    /// Failed; tried again at `retry_at`, or never again when `None`.
    Failed {
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

/// Records an attempt of a pending delivery; a delivery that is no longer
/// pending (a slower notifier reporting late) is left as it is.
pub fn record_attempt(conn: &mut PgConnection, id: i64, attempt: &Attempt) -> Result<DeliveryRow> {
    conn.transaction(|conn| {
        let current: DeliveryRow = deliveries::table
            .find(id)
            .for_update()
            .select(DeliveryRow::as_select())
            .first(conn)
            .optional()?
            .ok_or(Error::NotFound)?;
        if current.status != PENDING {
            return Ok(current);
        }
        let now = Utc::now();
        let target = deliveries::table.find(id);
        let attempts = current.attempts + 1;
        let row = match attempt {
            Attempt::Delivered => diesel::update(target)
                .set((
                    deliveries::status.eq(DELIVERED),
                    deliveries::attempts.eq(attempts),
                    deliveries::delivered_at.eq(now),
                    deliveries::updated_at.eq(now),
                ))
                .returning(DeliveryRow::as_returning())
                .get_result(conn)?,
            Attempt::Failed { error, retry_at } => diesel::update(target)
                .set((
                    deliveries::status.eq(if retry_at.is_some() { PENDING } else { FAILED }),
                    deliveries::attempts.eq(attempts),
                    deliveries::last_error.eq(error),
                    deliveries::next_attempt_at.eq(retry_at.unwrap_or(now)),
                    deliveries::updated_at.eq(now),
                ))
                .returning(DeliveryRow::as_returning())
                .get_result(conn)?,
        };
        Ok(row)
    })
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub limit: i64,
    pub workflow_id: Option<i64>,
    pub task_id: Option<i64>,
    /// The event's type.
    pub kind: Option<String>,
}

/// An alert with its event and deliveries.
#[derive(Debug, Clone)]
pub struct AlertView {
    pub alert: AlertRow,
    pub event: EventRecord,
    pub deliveries: Vec<DeliveryRow>,
}

/// Alerts, newest first.
pub fn list(conn: &mut PgConnection, filter: &AlertFilter) -> Result<Vec<AlertView>> {
    let mut query = alerts::table
        .inner_join(event_rows::table.on(event_rows::id.eq(alerts::event_id)))
        .select(AlertRow::as_select())
        .order(alerts::id.desc())
        .limit(filter.limit)
        .into_boxed();
    if let Some(w) = filter.workflow_id {
        query = query.filter(event_rows::workflow_id.eq(w));
    }
    if let Some(t) = filter.task_id {
        query = query.filter(event_rows::task_id.eq(t));
    }
    if let Some(k) = &filter.kind {
        query = query.filter(event_rows::kind.eq(k.clone()));
    }
    let rows: Vec<AlertRow> = query.load(conn)?;
    let event_ids: Vec<String> = rows.iter().map(|a| a.event_id.clone()).collect();
    let records = events::by_ids(conn, &event_ids)?;
    let mut all: Vec<DeliveryRow> = deliveries::table
        .filter(deliveries::alert_id.eq_any(rows.iter().map(|a| a.id)))
        .order(deliveries::id.asc())
        .select(DeliveryRow::as_select())
        .load(conn)?;
    let mut out = Vec::with_capacity(rows.len());
    for alert in rows {
        let Some(event) = records.iter().find(|r| r.id == alert.event_id).cloned() else {
            continue;
        };
        let (mine, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|d| d.alert_id == alert.id);
        all = rest;
        out.push(AlertView {
            alert,
            event,
            deliveries: mine,
        });
    }
    Ok(out)
}
