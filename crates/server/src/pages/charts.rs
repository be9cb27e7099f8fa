//! Server-rendered SVG charts (the pages run no JavaScript): usage per day as bars. The SVG
//! holds only numbers and `YYYY-MM-DD` dates from the control plane, so it is inserted as is.

use silo_billing::metering::UsageDay;

const BAR: u32 = 12;
const HEIGHT: u32 = 80;
/// Room for the y axis's numbers (left) and the x axis's dates (below).
const LEFT: u32 = 44;
const BELOW: u32 = 30;
const ABOVE: u32 = 8;
/// The width of a month of days, the chart's least.
const SLOTS: usize = 30;
/// About the width of a `YYYY-MM-DD` label at the chart's font size.
const DATE_WIDTH: u32 = 60;

/// One bar per day of requests, scaled to the busiest day, on axes: the y axis with 0, half
/// and the busiest day's count, the x axis with the first and last day, both named; each bar's
/// title gives its day and count, and a line under the chart the total and the busiest day.
/// Empty days are not drawn; no days: a note instead of a chart.
pub fn requests_per_day(days: &[UsageDay]) -> String {
    if days.is_empty() {
        return "<p class=\"muted\">No requests recorded yet.</p>".to_owned();
    }
    let busiest = days.iter().max_by_key(|d| d.requests).map_or(1, |d| d.requests).max(1);
    // Room for a month of bars however few days there are, so the dates never overlap.
    let slots = days.len().max(SLOTS) as u32;
    let (width, height) = (LEFT + BAR * slots + 4, ABOVE + HEIGHT + BELOW);
    let base = ABOVE + HEIGHT;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"Requests per day\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"10\" font-family=\"system-ui, sans-serif\">"
    );
    // Axes, their numbers and names.
    svg.push_str(&format!(
        "<line x1=\"{LEFT}\" y1=\"{ABOVE}\" x2=\"{LEFT}\" y2=\"{base}\" stroke=\"#5d6677\"/>\
         <line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{width}\" y2=\"{base}\" stroke=\"#5d6677\"/>"
    ));
    for (value, y) in [(0, base), (busiest / 2, base - HEIGHT / 2), (busiest, ABOVE)] {
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#5d6677\">{value}</text>",
            LEFT - 4,
            y + 3
        ));
    }
    // The first day under the first bar; the last under the last, when there is room for both.
    let (first, last) = (&days[0].day, &days[days.len() - 1].day);
    svg.push_str(&format!("<text x=\"{LEFT}\" y=\"{}\" fill=\"#5d6677\">{first}</text>", base + 12));
    let last_x = LEFT + 2 + BAR * days.len() as u32;
    if last_x >= LEFT + 2 * DATE_WIDTH {
        svg.push_str(&format!(
            "<text x=\"{last_x}\" y=\"{}\" text-anchor=\"end\" fill=\"#5d6677\">{last}</text>",
            base + 12
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#5d6677\">day</text>\
         <text x=\"2\" y=\"{}\" fill=\"#5d6677\" transform=\"rotate(-90 8 {})\">requests</text>",
        LEFT + (width - LEFT) / 2,
        base + 26,
        ABOVE + HEIGHT / 2,
        ABOVE + HEIGHT / 2
    ));
    for (i, day) in days.iter().enumerate() {
        let bar = ((day.requests.max(0) as u64 * u64::from(HEIGHT)) / busiest as u64) as u32;
        let (x, y) = (LEFT + 2 + i as u32 * BAR, base - bar.max(1));
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"#4263eb\"><title>{}: {} requests</title></rect>",
            BAR - 2,
            bar.max(1),
            day.day,
            day.requests
        ));
    }
    svg.push_str("</svg>");
    let total: i64 = days.iter().map(|d| d.requests.max(0)).sum();
    let top = days.iter().max_by_key(|d| d.requests).map_or("", |d| d.day.as_str());
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    svg.push_str(&format!(
        "<p class=\"muted chart-summary\">{} in {}; the busiest, {top}, had {busiest}.</p>",
        plural(usize::try_from(total).unwrap_or(0), "request"),
        plural(days.len(), "day")
    ));
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
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"));
        assert!(svg.contains("<title>2026-11-30: 10 requests</title>"));
        assert!(svg.contains("height=\"80\""), "the busiest day fills the chart: {svg}");
        assert!(svg.contains("height=\"40\""), "half of it: {svg}");
        // Axes with numbers, the first and last day, named; the sums in words.
        assert!(
            svg.contains(">10</text>") && svg.contains(">5</text>") && svg.contains(">0</text>"),
            "{svg}"
        );
        assert!(svg.contains(">2026-11-29</text>"), "{svg}");
        let days: Vec<UsageDay> = (1..=10).map(|d| day(&format!("2026-12-{d:02}"), d)).collect();
        let ten = requests_per_day(&days);
        assert!(ten.contains(">2026-12-01</text>") && ten.contains(">2026-12-10</text>"), "{ten}");
        assert!(svg.contains(">day</text>") && svg.contains(">requests</text>"), "{svg}");
        assert!(svg.contains("15 requests in 2 days; the busiest, 2026-11-30, had 10."), "{svg}");
        let one = requests_per_day(&[day("2026-12-07", 1)]);
        assert!(
            one.contains("1 request in 1 day;") && one.matches(">2026-12-07</text>").count() == 1,
            "{one}"
        );
        assert!(one.contains("width=\"408\""), "a month wide however few the days: {one}");
        assert!(requests_per_day(&[]).contains("No requests recorded yet."));
    }
}
