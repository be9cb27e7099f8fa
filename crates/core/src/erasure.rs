//! How a crate tells the erasure of a person (GDPR Art. 17, run by `silo-accounts` in one
//! transaction) what to do with the rows of its own control-plane tables that name them. The
//! owning crate writes the SQL; the erasure runs every registered step, so no crate writes a
//! statement against a table another crate owns.
//!
//! A step's `rows` and `set` use six numbered arguments: `?1` the account id, `?2` the
//! address (stored lower-cased; free text is compared lower-cased), `?3` `subject:<keyed
//! hash of the account id>`, `?4` the erasure job's id, `?5` the display name, `?6` now (on
//! the process's clock).

/// One statement of an erasure: `DELETE FROM {rows}` or, with `set`,
/// `UPDATE {table} SET {set} WHERE …` over the same rows.
#[derive(Clone, Copy, Debug)]
pub struct ErasureStep {
    /// The table, as reported in counts.
    pub table: &'static str,
    /// `<table> WHERE <filter>`: the rows that name the person.
    pub rows: &'static str,
    /// The anonymising `SET` clause; `None` deletes the rows.
    pub set: Option<&'static str>,
}

impl ErasureStep {
    /// The statement this step runs.
    pub fn statement(&self) -> String {
        match self.set {
            None => format!("DELETE FROM {}", self.rows),
            Some(set) => {
                let (name, filter) = self.rows.split_once(" WHERE ").expect("a step names its rows");
                format!("UPDATE {name} SET {set} WHERE {filter}")
            }
        }
    }

    /// The statement counting the rows this step would change (a dry run).
    pub fn count(&self) -> String {
        format!("SELECT count(*) FROM {}", self.rows)
    }

    /// The arguments (of the six) that `sql` uses: `?1`…`?n` up to the highest it names.
    pub fn arguments<'a>(sql: &str, all: &'a [String; 6]) -> &'a [String] {
        let used = (1..=all.len()).rev().find(|n| sql.contains(&format!("?{n}"))).unwrap_or(0);
        &all[..used]
    }
}

#[cfg(test)]
mod tests {
    use super::ErasureStep;

    #[test]
    fn a_step_deletes_or_anonymises_its_rows() {
        let delete = ErasureStep { table: "t", rows: "t WHERE a = ?1", set: None };
        assert_eq!(delete.statement(), "DELETE FROM t WHERE a = ?1");
        let anonymise = ErasureStep { table: "t", rows: "t WHERE a = ?2", set: Some("a = ?3") };
        assert_eq!(anonymise.statement(), "UPDATE t SET a = ?3 WHERE a = ?2");
        assert_eq!(anonymise.count(), "SELECT count(*) FROM t WHERE a = ?2");
        let all = ["1", "2", "3", "4", "5", "6"].map(String::from);
        assert_eq!(ErasureStep::arguments(&anonymise.statement(), &all).len(), 3);
        assert_eq!(ErasureStep::arguments("DELETE FROM t", &all).len(), 0);
    }
}
