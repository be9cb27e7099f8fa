//! Server-rendered SVG charts (the pages run no JavaScript): usage per day as bars. The SVG
//! holds only numbers and `YYYY-MM-DD` dates from the control plane, so it is inserted as is.

use silo_billing::metering::UsageDay;

const BAR: u32 = 12;
const HEIGHT: u32 = 80;

/// One bar per day of requests, scaled to the busiest day; each bar's title gives its day and
/// count. Empty days are not drawn; no days: a note instead of a chart.
pub fn requests_per_day(days: &[UsageDay]) -> String {
    if days.is_empty() {
        return "<p class=\"muted\">No requests recorded yet.</p>".to_owned();
    }
    let busiest = days.iter().map(|d| d.requests).max().unwrap_or(1).max(1);
    let width = BAR * days.len() as u32;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"Requests per day\" width=\"{width}\" height=\"{HEIGHT}\" viewBox=\"0 0 {width} {HEIGHT}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (i, day) in days.iter().enumerate() {
        let height = ((day.requests.max(0) as u64 * u64::from(HEIGHT - 2)) / busiest as u64) as u32;
        let (x, y) = (i as u32 * BAR, HEIGHT - height.max(1));
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"#4263eb\"><title>{}: {} requests</title></rect>",
            BAR - 2,
            height.max(1),
            day.day,
            day.requests
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(day: &str, requests: i64) -> UsageDay {
        UsageDay { day: day.into(), requests, storage_bytes: 0, seats: 1, active_users: 1 }
    }

    #[test]
    fn bars_scale_to_the_busiest_day() {
        let svg = requests_per_day(&[day("2026-11-29", 5), day("2026-11-30", 10)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("<title>2026-11-30: 10 requests</title>"));
        assert!(svg.contains("height=\"78\""), "the busiest day fills the chart: {svg}");
        assert!(svg.contains("height=\"39\""), "half of it: {svg}");
        assert!(requests_per_day(&[]).contains("No requests recorded yet."));
    }
}
