//! Times as people read them, for the pages: "3 minutes ago", "in 2 days", "5 Dec 2026, 10:42"
//! — inside a `<time>` whose `datetime` and `title` carry the exact UTC time. Registered as the
//! templates' `when` (a moment) and `day` (a date) filters; a value that is not a time is shown
//! as it is (escaped), and a missing one as "—".

use std::collections::HashMap;

use silo_core::Timestamp;

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// How a moment `at_ms` reads at `now_ms` (both ms since the epoch, UTC): relative within a
/// week, else the day and the time.
pub fn moment(at: &Timestamp, now_ms: i64) -> String {
    let delta = now_ms - at.unix_ms();
    let (ago, span) = (delta >= 0, delta.unsigned_abs() / 1000);
    let relative = |n: u64, unit: &str| {
        let unit = if n == 1 { unit.to_owned() } else { format!("{unit}s") };
        if ago { format!("{n} {unit} ago") } else { format!("in {n} {unit}") }
    };
    match span {
        0..60 => {
            if ago {
                "just now".to_owned()
            } else {
                "in a moment".to_owned()
            }
        }
        // The past counts whole units gone by; the future rounds, so a link valid for 7 days
        // reads "in 7 days" from the moment it is made, not "in 6 days".
        60..3_600 => relative(if ago { span / 60 } else { (span + 30) / 60 }, "minute"),
        3_600..86_400 => relative(if ago { span / 3_600 } else { (span + 1_800) / 3_600 }, "hour"),
        86_400..604_800 => relative(if ago { span / 86_400 } else { (span + 43_200) / 86_400 }, "day"),
        _ => format!("{}, {}", day(at.date()).unwrap_or_else(|| at.date().to_owned()), &at.as_str()[11..16]),
    }
}

/// A date (`YYYY-MM-DD`) as "5 Dec 2026"; `None` when it is not one.
pub fn day(date: &str) -> Option<String> {
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) =
        (date.get(0..4)?, date.get(5..7)?.parse::<usize>().ok()?, date.get(8..10)?.parse::<u32>().ok()?);
    year.parse::<u32>().ok()?;
    let name = MONTHS.get(month.checked_sub(1)?)?;
    Some(format!("{day} {name} {year}"))
}

/// The moment as a `<time>` element (its text escaped; the exact time in `datetime` and
/// `title`).
fn moment_html(at: &Timestamp, now_ms: i64) -> String {
    let exact = format!("{} {} UTC", day(at.date()).unwrap_or_default(), &at.as_str()[11..19]);
    format!(r#"<time datetime="{}" title="{exact}">{}</time>"#, at.as_str(), moment(at, now_ms))
}

/// A value the filters could not read: shown as it is, escaped.
fn as_is(value: &tera::Value) -> String {
    match value {
        tera::Value::Null => "—".to_owned(),
        tera::Value::String(s) => tera::escape_html(s),
        other => tera::escape_html(&other.to_string()),
    }
}

/// The `when` filter: `{{ t.created_at | when | safe }}`.
pub fn when_filter(value: &tera::Value, _: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    let parsed =
        value.as_str().and_then(|s| Timestamp::parse(s).or_else(|_| Timestamp::parse_moment(s)).ok());
    Ok(tera::Value::String(match parsed {
        Some(at) => moment_html(&at, Timestamp::now().unix_ms()),
        None => as_is(value),
    }))
}

/// The `day` filter: `{{ t.due_date | day | safe }}`.
pub fn day_filter(value: &tera::Value, _: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    let date = value.as_str().map(|s| s.get(..10).unwrap_or(s));
    Ok(tera::Value::String(match date.and_then(|d| day(d).map(|text| (d, text))) {
        Some((date, text)) => format!(r#"<time datetime="{date}">{text}</time>"#),
        None => as_is(value),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[test]
    fn moments_read_as_people_say_them() {
        let now = at("2026-12-05T10:42:30.000Z").unix_ms();
        let cases = [
            ("2026-12-05T10:42:10.000Z", "just now"),
            ("2026-12-05T10:39:00.000Z", "3 minutes ago"),
            ("2026-12-05T09:41:00.000Z", "1 hour ago"),
            ("2026-12-03T10:00:00.000Z", "2 days ago"),
            ("2026-12-08T11:00:00.000Z", "in 3 days"),
            ("2026-12-12T09:59:00.000Z", "in 7 days"),
            ("2026-12-05T10:44:00.000Z", "in 2 minutes"),
            ("2026-12-05T10:43:40.000Z", "in 1 minute"),
            ("2026-11-20T07:11:14.119Z", "20 Nov 2026, 07:11"),
            ("2027-03-01T00:00:00.000Z", "1 Mar 2027, 00:00"),
        ];
        for (moment_at, reads) in cases {
            assert_eq!(moment(&at(moment_at), now), reads, "{moment_at}");
        }
        let html = moment_html(&at("2026-12-05T07:11:14.119Z"), now);
        assert_eq!(
            html,
            r#"<time datetime="2026-12-05T07:11:14.119Z" title="5 Dec 2026 07:11:14 UTC">3 hours ago</time>"#
        );
    }

    #[test]
    fn the_filters_show_anything_else_as_it_is_escaped() {
        let none = HashMap::new();
        let shown = |v: tera::Value| when_filter(&v, &none).unwrap().as_str().unwrap().to_owned();
        assert_eq!(shown(tera::Value::Null), "—");
        assert_eq!(shown("<b>never</b>".into()), "&lt;b&gt;never&lt;&#x2F;b&gt;");
        assert!(
            shown("2026-12-05T10:42:13Z".into()).starts_with("<time datetime=\"2026-12-05T10:42:13.000Z\"")
        );
        let day_of = |v: tera::Value| day_filter(&v, &none).unwrap().as_str().unwrap().to_owned();
        assert_eq!(day_of("2026-11-22".into()), r#"<time datetime="2026-11-22">22 Nov 2026</time>"#);
        assert_eq!(day_of("2026-13-22".into()), "2026-13-22");
        assert_eq!(day("2026-02-05"), Some("5 Feb 2026".into()));
    }
}
