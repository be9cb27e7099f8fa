//! One person's rows in a tenant file, as the personal-data manifest attributes them (GDPR
//! Art. 15/20): for every table with a `person` column, the rows that point at the person's
//! member row (or are it), every column as JSON.

use std::collections::BTreeMap;

use crate::Result;
use silo_tenancy::Turn;

/// The person's rows by table (tables without any are left out; no member row: empty). Each
/// table is read on the blocking pool, with the caller's turn.
pub async fn rows_of(db: &Turn, user_id: &str) -> Result<BTreeMap<String, Vec<serde_json::Value>>> {
    let manifest = crate::personal_data();
    let Some(member) = crate::members::by_user(db, user_id)? else {
        return Ok(BTreeMap::new());
    };
    let mut found = BTreeMap::new();
    for (table, rules) in &manifest.tables {
        let Some(person) = &rules.person else { continue };
        // `members` is the person's own row (by account id); other tables point at its id.
        let key = if person == "user_id" { serde_json::json!(user_id) } else { serde_json::json!(member.id) };
        // Names come from the embedded manifest (checked against the schema by a test), never
        // from input; quoted as identifiers all the same.
        let sql = format!("SELECT * FROM \"{table}\" WHERE \"{person}\" = ?1 ORDER BY rowid");
        let rows = db
            .call_blocking(move |conn| {
                let mut statement = conn.prepare(&sql)?;
                let names: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
                let key: Box<dyn rusqlite::ToSql> = match &key {
                    serde_json::Value::String(s) => Box::new(s.clone()),
                    other => Box::new(other.as_i64().unwrap_or_default()),
                };
                let rows = statement.query_map([key], |row| {
                    let mut object = serde_json::Map::new();
                    for (i, name) in names.iter().enumerate() {
                        object.insert(name.clone(), silo_tenancy::export::json_value(row.get_ref(i)?));
                    }
                    Ok(serde_json::Value::Object(object))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        if !rows.is_empty() {
            found.insert(table.clone(), rows);
        }
    }
    Ok(found)
}
