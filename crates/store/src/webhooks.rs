//! Webhook deliveries: every verified delivery is recorded with its outcome
//! before the gateway answers, so a redelivery gets the first answer back.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::schema::webhook_deliveries;
use crate::{Error, Result, is_unique_violation};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct DeliveryRow {
    pub id: i64,
    pub provider: String,
    pub delivery_id: String,
    pub event: String,
    pub body_sha256: String,
    pub task_ids: Vec<i64>,
    pub ignored: Option<String>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_deliveries)]
pub struct NewDelivery<'a> {
    pub provider: &'a str,
    pub delivery_id: &'a str,
    pub event: &'a str,
    pub body_sha256: &'a str,
    pub task_ids: Vec<i64>,
    pub ignored: Option<&'a str>,
}

/// The recorded delivery with this id, if any.
pub fn find(
    conn: &mut PgConnection,
    provider: &str,
    delivery_id: &str,
) -> Result<Option<DeliveryRow>> {
    Ok(webhook_deliveries::table
        .filter(webhook_deliveries::provider.eq(provider))
        .filter(webhook_deliveries::delivery_id.eq(delivery_id))
        .select(DeliveryRow::as_select())
        .first(conn)
        .optional()?)
}

/// The recorded deliveries among `keys` (provider, delivery id), in one
/// query.
pub fn find_many(conn: &mut PgConnection, keys: &[(&str, &str)]) -> Result<Vec<DeliveryRow>> {
    let ids: Vec<&str> = keys.iter().map(|(_, id)| *id).collect();
    let mut providers: Vec<&str> = keys.iter().map(|(p, _)| *p).collect();
    providers.sort_unstable();
    providers.dedup();
    // Both columns, so that the unique index on them is used.
    let rows: Vec<DeliveryRow> = webhook_deliveries::table
        .filter(webhook_deliveries::provider.eq_any(&providers))
        .filter(webhook_deliveries::delivery_id.eq_any(&ids))
        .select(DeliveryRow::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter(|r| {
            keys.iter()
                .any(|(p, id)| r.provider == *p && r.delivery_id == *id)
        })
        .collect())
}

/// Records deliveries in one statement, in order; `Conflict` when one of
/// them was recorded meanwhile (then none is).
pub fn insert_many(conn: &mut PgConnection, new: &[NewDelivery<'_>]) -> Result<Vec<DeliveryRow>> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    diesel::insert_into(webhook_deliveries::table)
        .values(new)
        .returning(DeliveryRow::as_returning())
        .get_results(conn)
        .map_err(duplicate)
}

/// Records a delivery; `Conflict` when the same id was recorded meanwhile.
pub fn insert(conn: &mut PgConnection, new: &NewDelivery<'_>) -> Result<DeliveryRow> {
    diesel::insert_into(webhook_deliveries::table)
        .values(new)
        .returning(DeliveryRow::as_returning())
        .get_result(conn)
        .map_err(duplicate)
}

/// A unique violation as `Conflict`: the delivery was recorded meanwhile.
fn duplicate(e: diesel::result::Error) -> Error {
    if is_unique_violation(&e) {
        Error::Conflict("duplicate delivery".to_owned())
    } else {
        Error::Database(e)
    }
}
