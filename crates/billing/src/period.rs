//! A billing period: one calendar month (UTC), `YYYY-MM`, and the day arithmetic invoices need
//! (days in the month, which day of it a timestamp falls on, a date's day number), over the
//! civil-date day numbers of `silo_core::time`, so no date library is needed for this.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};
use silo_core::time::day_number;

/// A calendar month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    /// The year.
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl FromStr for Period {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad =
            || Error::invalid("period", format!("`{text}` is not a month: write YYYY-MM, e.g. 2026-11"));
        let (year, month) = text.trim().split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let (year, month) = (year.parse().map_err(|_| bad())?, month.parse().map_err(|_| bad())?);
        if !(1..=12).contains(&month) || !(2000..=9999).contains(&year) {
            return Err(bad());
        }
        Ok(Self { year, month })
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Period {
    /// The month a `YYYY-MM-DD…` date or timestamp falls in.
    pub fn of(date: &str) -> Result<Self> {
        date.get(..7).unwrap_or(date).parse()
    }

    /// The month before.
    pub fn previous(self) -> Self {
        if self.month == 1 {
            Self { year: self.year - 1, month: 12 }
        } else {
            Self { month: self.month - 1, ..self }
        }
    }

    /// The month after.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self { year: self.year + 1, month: 1 }
        } else {
            Self { month: self.month + 1, ..self }
        }
    }

    /// Its number of days.
    pub fn days(self) -> u32 {
        (day_number(self.next().year, self.next().month, 1) - day_number(self.year, self.month, 1)) as u32
    }

    /// `YYYY-MM-DD` of its `day`.
    pub fn date(self, day: u32) -> String {
        format!("{self}-{day:02}")
    }

    /// Its first instant, as stored timestamps spell it (they compare as text).
    pub fn start(self) -> String {
        format!("{}T00:00:00.000Z", self.date(1))
    }

    /// The first instant after it.
    pub fn end(self) -> String {
        self.next().start()
    }

    /// The day of this month (1-based) on which a `YYYY-MM-DD…` timestamp falls: 0 when it
    /// is before the month, `days() + 1` when after.
    pub fn day_of(self, timestamp: &str) -> u32 {
        match Self::of(timestamp) {
            Ok(p) if p < self => 0,
            Ok(p) if p > self => self.days() + 1,
            Ok(_) => timestamp.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(1),
            Err(_) => 0,
        }
    }
}

/// The day number of a `YYYY-MM-DD…` timestamp.
pub fn day_of_timestamp(timestamp: &str) -> Result<i64> {
    let bad = || Error::invalid("date", format!("`{timestamp}` is not a date"));
    let part = |range: std::ops::Range<usize>| {
        timestamp.get(range).and_then(|s| s.parse::<u32>().ok()).ok_or_else(bad)
    };
    Ok(day_number(part(0..4)? as i32, part(5..7)?, part(8..10)?))
}

#[cfg(test)]
mod tests {
    use silo_core::time::civil;

    use super::*;

    #[test]
    fn months_parse_count_their_days_and_place_timestamps() {
        let feb: Period = "2028-02".parse().unwrap();
        assert_eq!((feb.days(), "2026-02".parse::<Period>().unwrap().days()), (29, 28));
        assert_eq!("2026-12".parse::<Period>().unwrap().next().to_string(), "2027-01");
        assert_eq!("2026-01".parse::<Period>().unwrap().previous().to_string(), "2025-12");
        for bad in ["2026-13", "2026-1", "26-01", "november", "2026-00", ""] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
        let nov: Period = "2026-11".parse().unwrap();
        assert_eq!(nov.day_of("2026-11-14T09:00:00.000Z"), 14);
        assert_eq!(nov.day_of("2026-10-31T23:59:59.999Z"), 0);
        assert_eq!(nov.day_of("2026-12-01T00:00:00.000Z"), 31);
        assert_eq!(
            (nov.start().as_str(), nov.end().as_str()),
            ("2026-11-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z")
        );
    }

    #[test]
    fn day_numbers_round_trip() {
        assert_eq!(day_number(1970, 1, 1), 0);
        for days in -800_000..800_000 {
            let (y, m, d) = civil(days);
            assert_eq!(day_number(y, m, d), days);
        }
        assert_eq!(civil(day_of_timestamp("2026-11-30T11:00:00Z").unwrap() + 14), (2026, 12, 14));
    }
}
