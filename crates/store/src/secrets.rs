//! Workflow secrets, stored encrypted. This module only moves the sealed
//! bytes; the orchestrator encrypts and decrypts with `SLIPWAY_SECRET_KEY`.

use chrono::Utc;
use diesel::prelude::*;
use diesel::upsert::excluded;

use crate::Result;
use crate::schema::secrets;

/// A secret's sealed value.
#[derive(Debug, Clone, Queryable)]
pub struct SealedSecret {
    pub name: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Creates or replaces a secret.
pub fn put(
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

/// Every sealed secret of a workflow.
pub fn sealed(conn: &mut PgConnection, workflow_id: i64) -> Result<Vec<SealedSecret>> {
    Ok(secrets::table
        .filter(secrets::workflow_id.eq(workflow_id))
        .order(secrets::name.asc())
        .select((secrets::name, secrets::nonce, secrets::ciphertext))
        .load(conn)?)
}
