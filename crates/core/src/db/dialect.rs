//! The one place the control plane's two SQL dialects differ at the level of text.
//!
//! Statements are written once, in SQLite's dialect, and run as written on SQLite. For
//! PostgreSQL, [`to_postgres`] turns SQLite's placeholders (`?`, `?N`) into PostgreSQL's
//! (`$N`); the functions SQLite has and PostgreSQL lacks (`json_extract`, `json_each`,
//! `json_set`, `instr`, two-argument `min`/`max`, `->>` on text…) and the `NOCASE`
//! collation are created in the PostgreSQL schema by its first control migration
//! (`migrations/control-postgres/0001_control_plane.sql`), so the statement text needs no
//! other change. What neither trick covers is written portably where it is used (`ON
//! CONFLICT DO NOTHING` rather than `INSERT OR IGNORE`, `TRUE` rather than `1`, `IS
//! DISTINCT FROM`, `count(*) FILTER (WHERE …)`, `CAST(… AS BIGINT)` around sums).

/// `sql` with SQLite's placeholders numbered as PostgreSQL's: `?N` becomes `$N`, and the
/// bare `?`s are numbered 1, 2, 3… in order, as sqlx binds them on SQLite (a statement uses
/// one form or the other: sqlx numbers bare ones apart from numbered ones, SQLite does not).
/// Quoted strings, quoted identifiers and comments (`--`, `/* */`) are left as they are.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.char_indices().peekable();
    let mut bare = 0u32;
    while let Some((_, c)) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                // Up to the closing quote; a doubled quote is an escaped one and continues.
                for (_, inner) in chars.by_ref() {
                    out.push(inner);
                    if inner == c {
                        break;
                    }
                }
            }
            '/' if chars.peek().is_some_and(|&(_, next)| next == '*') => {
                out.push(c);
                let mut previous = ' ';
                for (_, inner) in chars.by_ref() {
                    out.push(inner);
                    if previous == '*' && inner == '/' {
                        break;
                    }
                    previous = inner;
                }
            }
            '-' if chars.peek().is_some_and(|&(_, next)| next == '-') => {
                out.push(c);
                for (_, inner) in chars.by_ref() {
                    out.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                let mut digits = String::new();
                while let Some(&(_, d)) = chars.peek().filter(|(_, d)| d.is_ascii_digit()) {
                    digits.push(d);
                    chars.next();
                }
                let number = match digits.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => {
                        bare += 1;
                        bare
                    }
                };
                out.push('$');
                out.push_str(&number.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_postgres;

    #[test]
    fn placeholders_are_numbered_and_quotes_and_comments_are_left_alone() {
        assert_eq!(to_postgres("SELECT ? , ?"), "SELECT $1 , $2");
        assert_eq!(to_postgres("a = ?2 AND b = ?1 OR c = ?2"), "a = $2 AND b = $1 OR c = $2");
        assert_eq!(to_postgres("x IN (?10, ?3)"), "x IN ($10, $3)");
        assert_eq!(
            to_postgres("json_set(d, '$.a?', ?1) -- why?\nWHERE \"odd?\" = ?2"),
            "json_set(d, '$.a?', $1) -- why?\nWHERE \"odd?\" = $2"
        );
        assert_eq!(to_postgres("'it''s ?' || ?"), "'it''s ?' || $1");
        assert_eq!(to_postgres("SELECT /* a ? isn't one */ ?"), "SELECT /* a ? isn't one */ $1");
        assert_eq!(to_postgres("a / ? * b"), "a / $1 * b");
        assert_eq!(to_postgres("a - -1 - ?"), "a - -1 - $1");
        assert_eq!(to_postgres("SELECT 'é?' || ?1"), "SELECT 'é?' || $1");
    }
}
