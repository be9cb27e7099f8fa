//! The arithmetic of one tenant's invoice for one calendar month, in integer minor units: no
//! floating point, no rounding drift. Pure functions: the billing run ([`crate::run`]) cuts the
//! month and stores what this computes ([`crate::invoices`]).
//!
//! A month is cut into **segments** (a plan held over a run of days, with its seat count and
//! whether those days are a trial). Each priced item (the base price, the seats) is prorated by
//! days with *cumulative* rounding: the amount of the days up to the end of a segment is
//! rounded, and a segment's line is the difference from the previous cut. So however a month
//! is cut, the lines of a plan held all month add up to exactly its price, and no cent
//! appears or vanishes between lines. Trial days cost nothing. Storage beyond the plan's limit
//! is charged per started GB at the month's peak (the run finds it). Tax is one line, a rate in basis points of
//! the subtotal, rounded half up; the lines always sum to the total.

use serde::{Deserialize, Serialize};

use crate::Plan;

/// A run of days in the month on one plan.
#[derive(Clone, Debug)]
pub struct Segment {
    /// The plan's name (for the line descriptions).
    pub plan: String,
    /// Its terms.
    pub terms: Plan,
    /// First day, 1-based.
    pub from_day: u32,
    /// Last day, inclusive.
    pub to_day: u32,
    /// Seats billed over these days.
    pub seats: u32,
    /// Trial days: free.
    pub trial: bool,
}

/// One line of an invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// What it is for.
    pub description: String,
    /// Minor units (never negative on an invoice; a credit note's lines are the negatives).
    pub amount: i64,
}

/// An invoice's lines as stored, tax last (JSON in the control plane).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lines(pub Vec<Line>);

impl std::ops::Deref for Lines {
    type Target = Vec<Line>;

    fn deref(&self) -> &Vec<Line> {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Lines {
    type Item = &'a Line;
    type IntoIter = std::slice::Iter<'a, Line>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl TryFrom<silo_core::db::JsonText> for Lines {
    type Error = serde_json::Error;

    fn try_from(stored: silo_core::db::JsonText) -> serde_json::Result<Self> {
        stored.parse()
    }
}

/// An invoice's lines and totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Amounts {
    /// The charges, then the tax line (when the rate is not zero).
    pub lines: Vec<Line>,
    /// Sum of the charges.
    pub subtotal: i64,
    /// The tax.
    pub tax: i64,
    /// `subtotal + tax`: the sum of every line.
    pub total: i64,
}

/// `total * upto / days`, rounded half up (`total`, `upto`, `days` are non-negative).
fn share(total: i64, upto: u32, days: u32) -> i64 {
    let (total, upto, days) = (i128::from(total), i128::from(upto), i128::from(days.max(1)));
    ((2 * total * upto + days) / (2 * days)) as i64
}

/// The invoice of a month of `days_in_month` days cut into `segments` (in order, covering the
/// days billed), with `overage_gb` started GB of storage beyond the plan at the month's peak
/// (charged at `overage_price` per GB) and tax at `tax_bp` basis points.
pub fn compute(
    days_in_month: u32,
    segments: &[Segment],
    overage_gb: u64,
    overage_price: i64,
    tax_bp: u32,
) -> Amounts {
    let mut lines = Vec::new();
    for segment in segments {
        let (from, to) = (segment.from_day, segment.to_day);
        let days = to + 1 - from;
        let whole = days == days_in_month;
        let period = if whole { "the month".to_owned() } else { format!("days {from}–{to}") };
        let prorated = |price: i64| {
            if segment.trial {
                0
            } else {
                share(price, to, days_in_month) - share(price, from - 1, days_in_month)
            }
        };
        let base = prorated(segment.terms.price_month);
        if segment.terms.price_month > 0 {
            let trial = if segment.trial { " (trial)" } else { "" };
            lines.push(Line { description: format!("{} plan, {period}{trial}", segment.plan), amount: base });
        }
        if segment.terms.price_seat > 0 && segment.seats > 0 {
            let per_seat = prorated(segment.terms.price_seat);
            let trial = if segment.trial { " (trial)" } else { "" };
            lines.push(Line {
                description: format!(
                    "{} seat{} × {} plan, {period}{trial}",
                    segment.seats,
                    if segment.seats == 1 { "" } else { "s" },
                    segment.plan
                ),
                amount: per_seat * i64::from(segment.seats),
            });
        }
    }
    if overage_gb > 0 && overage_price > 0 {
        lines.push(Line {
            description: format!("storage beyond the plan: {overage_gb} GB at the month's peak"),
            amount: overage_price * overage_gb as i64,
        });
    }
    let subtotal: i64 = lines.iter().map(|l| l.amount).sum();
    let tax = share(subtotal, tax_bp, 10_000);
    if tax_bp > 0 {
        lines.push(Line { description: format!("tax {}.{:02} %", tax_bp / 100, tax_bp % 100), amount: tax });
    }
    Amounts { lines, subtotal, tax, total: subtotal + tax }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn plan(price_month: i64, price_seat: i64) -> Plan {
        Plan { price_month, price_seat, ..Plan::default() }
    }

    fn segment(name: &str, terms: &Plan, from_day: u32, to_day: u32, seats: u32, trial: bool) -> Segment {
        Segment { plan: name.into(), terms: terms.clone(), from_day, to_day, seats, trial }
    }

    #[test]
    fn a_whole_month_costs_the_price_and_tax_is_its_own_line() {
        let team = plan(5_000, 800);
        let amounts = compute(30, &[segment("team", &team, 1, 30, 3, false)], 0, 0, 1_900);
        let charged: Vec<i64> = amounts.lines.iter().map(|l| l.amount).collect();
        assert_eq!(charged, [5_000, 2_400, 1_406]);
        assert_eq!((amounts.subtotal, amounts.tax, amounts.total), (7_400, 1_406, 8_806));
        assert_eq!(amounts.lines[2].description, "tax 19.00 %");
    }

    #[test]
    fn a_mid_month_change_is_prorated_by_days_and_trial_days_are_free() {
        let (free, team) = (plan(0, 0), plan(3_000, 0));
        // 31 days: free for 10 days, then team for 21 (trial for the first 14 of them).
        let amounts = compute(
            31,
            &[
                segment("free", &free, 1, 10, 1, false),
                segment("team", &team, 11, 24, 1, true),
                segment("team", &team, 25, 31, 1, false),
            ],
            0,
            0,
            0,
        );
        assert_eq!(amounts.lines.len(), 2, "{amounts:?}");
        assert_eq!(amounts.lines[0].amount, 0, "trial");
        assert_eq!(amounts.lines[1].amount, 3_000 - share(3_000, 24, 31), "the last 7 of 31 days");
        assert_eq!(amounts.total, 677);
    }

    /// Property: for any cut of any month, a plan held all month totals exactly its price
    /// (and its seats exactly seats × price), every line is non-negative, the lines sum to the
    /// total, and the tax is within half a minor unit of the exact rate.
    #[test]
    fn any_cut_of_a_month_adds_up_exactly() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(20261130);
        for _ in 0..20_000 {
            let days = rng.random_range(28..=31);
            let terms = plan(rng.random_range(0..1_000_000), rng.random_range(0..100_000));
            let seats = rng.random_range(0..50);
            let mut cuts: Vec<u32> = (0..rng.random_range(0..6)).map(|_| rng.random_range(1..days)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut segments = Vec::new();
            let mut from = 1;
            for cut in cuts.into_iter().chain([days]) {
                segments.push(segment("p", &terms, from, cut, seats, false));
                from = cut + 1;
            }
            let tax_bp = rng.random_range(0..3_000);
            let overage = rng.random_range(0..5);
            let amounts = compute(days, &segments, overage, 200, tax_bp);
            let expected = terms.price_month + terms.price_seat * i64::from(seats) + 200 * overage as i64;
            assert_eq!(amounts.subtotal, expected, "{segments:?}");
            assert!(amounts.lines.iter().all(|l| l.amount >= 0));
            assert_eq!(amounts.lines.iter().map(|l| l.amount).sum::<i64>(), amounts.total);
            let exact = i128::from(amounts.subtotal) * i128::from(tax_bp);
            assert!((i128::from(amounts.tax) * 10_000 - exact).abs() <= 5_000, "{amounts:?}");
        }
    }
}
