//! Workflow secrets, stored encrypted. This module only moves the sealed
//! bytes; the orchestrator encrypts and decrypts with `SLIPWAY_SECRET_KEY`.

use chrono::Utc;
use diesel::prelude::*;
use diesel::upsert::excluded;

use crate::schema::{secrets, workflows};
use crate::{Error, Result};

/// A secret's sealed value.
#[derive(Debug, Clone, Queryable)]
pub struct SealedSecret {
    pub name: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Creates or replaces a secret of a live workflow, which may hold at most
/// `max` secrets: a new one past that is [`Error::LimitReached`]. The
/// workflow's row is locked meanwhile, so two new secrets set at once
/// cannot both take the last place.
pub fn put(
    conn: &mut PgConnection,
    workflow_id: i64,
    name: &str,
    nonce: &[u8],
    ciphertext: &[u8],
    max: usize,
) -> Result<()> {
    conn.transaction(|conn| {
        workflows::table
            .find(workflow_id)
            .filter(workflows::deleted_at.is_null())
            .select(workflows::id)
            .for_update()
            .first::<i64>(conn)
            .optional()?
            .ok_or(Error::NotFound)?;
        let others: i64 = secrets::table
            .filter(secrets::workflow_id.eq(workflow_id))
            .filter(secrets::name.ne(name))
            .count()
            .get_result(conn)?;
        if usize::try_from(others).unwrap_or(usize::MAX) >= max {
            return Err(Error::LimitReached(format!(
                "a workflow may have at most {max} secrets: {name} would be one more"
            )));
        }
        upsert(conn, workflow_id, name, nonce, ciphertext)
    })
}

fn upsert(
    conn: &mut PgConnection,
    workflow_id: i64,
    name: &str,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<()> {
    diesel::insert_into(secrets::table)
        .values((
            secrets::workflow_id.eq(workflow_id),
            secrets::name.eq(name),
            secrets::nonce.eq(nonce),
            secrets::ciphertext.eq(ciphertext),
            secrets::updated_at.eq(Utc::now()),
        ))
        .on_conflict((secrets::workflow_id, secrets::name))
        .do_update()
        .set((
            secrets::nonce.eq(excluded(secrets::nonce)),
            secrets::ciphertext.eq(excluded(secrets::ciphertext)),
            secrets::updated_at.eq(excluded(secrets::updated_at)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The names of a workflow's secrets, sorted.
pub fn names(conn: &mut PgConnection, workflow_id: i64) -> Result<Vec<String>> {
    Ok(secrets::table
        .filter(secrets::workflow_id.eq(workflow_id))
        .order(secrets::name.asc())
        .select(secrets::name)
        .load(conn)?)
}

/// A sealed secret and its workflow.
#[derive(Debug, Clone, Queryable)]
pub struct StoredSecret {
    pub workflow_id: i64,
    pub name: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Replaces every secret with what `reseal` makes of it (`None`: left as
/// it is), in one transaction that locks them all, so a secret set
/// meanwhile is not overwritten with an older value. Returns the number
/// replaced.
pub fn reseal_all(
    conn: &mut PgConnection,
    mut reseal: impl FnMut(&StoredSecret) -> Option<(Vec<u8>, Vec<u8>)>,
) -> Result<usize> {
    conn.transaction(|conn| {
        let all: Vec<StoredSecret> = secrets::table
            .order((secrets::workflow_id.asc(), secrets::name.asc()))
            .select((
                secrets::workflow_id,
                secrets::name,
                secrets::nonce,
                secrets::ciphertext,
            ))
            .for_update()
            .load(conn)?;
        let mut replaced = 0;
        for secret in &all {
            if let Some((nonce, ciphertext)) = reseal(secret) {
                diesel::update(
                    secrets::table
                        .filter(secrets::workflow_id.eq(secret.workflow_id))
                        .filter(secrets::name.eq(&secret.name)),
                )
                .set((secrets::nonce.eq(nonce), secrets::ciphertext.eq(ciphertext)))
                .execute(conn)?;
                replaced += 1;
            }
        }
        Ok(replaced)
    })
}

/// Every sealed secret of a workflow.
pub fn sealed(conn: &mut PgConnection, workflow_id: i64) -> Result<Vec<SealedSecret>> {
    Ok(secrets::table
        .filter(secrets::workflow_id.eq(workflow_id))
        .order(secrets::name.asc())
        .select((secrets::name, secrets::nonce, secrets::ciphertext))
        .load(conn)?)
}
