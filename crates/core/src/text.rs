//! Text as forms and the API take it: what counts as blank around a value. The API's schemas
//! say "not only spaces" with the pattern `\S` (ECMAScript's white space and line terminators),
//! so the server trims exactly that set — Rust's `trim` differs (it trims U+0085 and keeps
//! U+FEFF), and a value the schema calls valid would be refused, or the reverse.

/// ECMAScript's `\s`: white space and line terminators.
pub fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{FEFF}'
    )
}

/// `value` without the blank (ECMAScript's `\s`) at either end.
pub fn trim(value: &str) -> &str {
    value.trim_matches(is_space)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_what_the_schema_pattern_calls_blank() {
        assert_eq!(trim(" \t\u{A0}x y\u{3000}\n"), "x y");
        assert_eq!(trim("\u{FEFF}"), "", "a byte-order mark is blank to `\\S`");
        assert_eq!(trim("\u{85}"), "\u{85}", "NEL is not blank to `\\S`");
    }
}
