//! Time as Silo stores it: [`Timestamp`], UTC in RFC 3339 with milliseconds
//! (`2026-11-30T07:33:51.123Z`), the text SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ')` writes.
//! The fixed width makes text order time order, so stored times compare in SQL and in Rust
//! alike. The [`Clock`] says what time it is: [`SystemClock`] reads the operating system,
//! [`TestClock`] is moved by hand, and [`ProcessClock`] is the one a process runs on: every
//! "now" Silo stores or compares comes from it, bound as a parameter in SQL.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// A UTC time in Silo's stored format.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Timestamp(String);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        utc_now()
    }

    /// Checks the stored format (`YYYY-MM-DDTHH:MM:SS.mmmZ`) and that it names a real moment
    /// (no month 13, no 30 February, no 25 o'clock).
    pub fn parse(text: &str) -> Result<Self, String> {
        let b = text.as_bytes();
        let digits = |range: std::ops::Range<usize>| range.into_iter().all(|i| b[i].is_ascii_digit());
        let shaped = b.len() == 24
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19)
            && b[19] == b'.'
            && digits(20..23)
            && b[23] == b'Z';
        if !shaped {
            return Err(format!("not a stored time: `{text}`"));
        }
        let n = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap_or(u32::MAX);
        let (year, month, day) = (n(0..4) as i32, n(5..7), n(8..10));
        let real = (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && n(11..13) < 24
            && n(14..16) < 60
            && n(17..19) < 60;
        if real { Ok(Self(text.to_owned())) } else { Err(format!("not a real date and time: `{text}`")) }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The day, `YYYY-MM-DD`.
    pub fn date(&self) -> &str {
        &self.0[..10]
    }

    /// A moment given by a person: the stored format, or RFC 3339 in UTC to the second
    /// (`2026-12-05T10:42:13Z`, meaning `.000`).
    pub fn parse_moment(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let full = match text.strip_suffix('Z') {
            Some(seconds) if seconds.len() == 19 => format!("{seconds}.000Z"),
            _ => text.to_owned(),
        };
        let parsed = Self::parse(&full).map_err(|e| {
            if e.starts_with("not a real") {
                format!("`{text}` is not a real date and time")
            } else {
                format!("`{text}` is not a UTC time like 2026-12-05T10:42:13Z")
            }
        })?;
        // Before the Unix epoch nothing of Silo existed (and `from_unix_ms` clamps there).
        if parsed.as_str() < "1970" {
            return Err(format!("`{text}` is before 1970"));
        }
        Ok(parsed)
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_ms(&self) -> i64 {
        let b = &self.0;
        let n = |range: std::ops::Range<usize>| b[range].parse::<i64>().unwrap_or(0);
        let days = day_number(n(0..4) as i32, n(5..7) as u32, n(8..10) as u32);
        ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
    }

    /// The same moment as a [`std::time::SystemTime`].
    pub fn to_system_time(&self) -> std::time::SystemTime {
        let ms = self.unix_ms();
        if ms >= 0 {
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64)
        } else {
            std::time::UNIX_EPOCH - std::time::Duration::from_millis(ms.unsigned_abs())
        }
    }

    /// The moment `ms` milliseconds after the Unix epoch.
    pub fn from_unix_ms(ms: i64) -> Self {
        utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64))
    }

    /// The moment `by` later.
    pub fn plus(&self, by: Duration) -> Self {
        Self::from_unix_ms(self.unix_ms().saturating_add(by.as_millis() as i64))
    }

    /// The moment `by` earlier.
    pub fn minus(&self, by: Duration) -> Self {
        Self::from_unix_ms(self.unix_ms().saturating_sub(by.as_millis() as i64))
    }
}

/// What time it is. Code given a clock instead of reading the system's lets a test move time
/// (an invoice's due date, a session's lifetime, a grace period) by hand.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// A clock shared by the services of one process.
pub type SharedClock = Arc<dyn Clock>;

/// The clock a process runs on, as its settings carry it: the system's unless a test sets
/// a [`TestClock`] (it is not read from any file: `#[serde(skip)]`). Cheap to clone.
#[derive(Clone)]
pub struct ProcessClock(SharedClock);

impl ProcessClock {
    /// A process running on `clock`.
    pub fn new(clock: SharedClock) -> Self {
        Self(clock)
    }

    /// Now, on this clock.
    pub fn now(&self) -> Timestamp {
        self.0.now()
    }
}

impl Default for ProcessClock {
    fn default() -> Self {
        Self(SystemClock::shared())
    }
}

impl fmt::Debug for ProcessClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProcessClock({})", self.now())
    }
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        utc_now()
    }
}

impl SystemClock {
    /// The system clock, shared.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

/// A clock that stands still until a test moves it; clones share one time.
#[derive(Clone, Debug)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    /// A clock standing at `moment`.
    pub fn at(moment: &Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(moment.unix_ms())))
    }

    /// A clock standing at the system's time now.
    pub fn starting_now() -> Self {
        Self::at(&utc_now())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    /// Sets the clock to `moment` (earlier or later).
    pub fn set(&self, moment: &Timestamp) {
        self.0.store(moment.unix_ms(), Ordering::SeqCst);
    }

    /// This clock, shared (it keeps moving with the original).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(self.0.load(Ordering::SeqCst))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Timestamp {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl rusqlite::types::FromSql for Timestamp {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        Self::parse(text).map_err(|e| rusqlite::types::FromSqlError::Other(e.into()))
    }
}

impl sqlx::Type<sqlx::Sqlite> for Timestamp {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as sqlx::Type<sqlx::Sqlite>>::type_info()
    }

    fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Sqlite>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for Timestamp {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Sqlite as sqlx::Database>::ArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<sqlx::Sqlite>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for Timestamp {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <String as sqlx::Decode<sqlx::Sqlite>>::decode(value)?;
        Ok(Self::parse(&text)?)
    }
}

impl sqlx::Type<sqlx::Postgres> for Timestamp {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Timestamp {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <String as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Self::parse(&text)?)
    }
}

/// The system's current time as stored (code that can take a [`Clock`] asks it instead).
pub fn utc_now() -> Timestamp {
    utc_timestamp(std::time::SystemTime::now())
}

/// A time as stored.
pub fn utc_timestamp(time: std::time::SystemTime) -> Timestamp {
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil(days);
    Timestamp(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    ))
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
pub fn day_number(year: i32, month: u32, day: u32) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The number of days in `month` of `year` (28 to 31).
pub fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month >= 12 { (year + 1, 1) } else { (year, month + 1) };
    (day_number(next_year, next_month, 1) - day_number(year, month.clamp(1, 12), 1)) as u32
}

/// The civil date of a day number.
pub fn civil(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((yoe + era * 400 + i64::from(month <= 2)) as i32, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_parse_and_order_as_time() {
        let now = Timestamp::now();
        assert_eq!(Timestamp::parse(now.as_str()), Ok(now.clone()));
        let epoch = utc_timestamp(std::time::UNIX_EPOCH);
        assert_eq!(epoch.as_str(), "1970-01-01T00:00:00.000Z");
        assert!(epoch < now);
        assert_eq!(Timestamp::from_unix_ms(now.unix_ms()), now);
        assert_eq!(epoch.unix_ms(), 0);
        let moment = Timestamp::parse_moment("2026-12-05T10:42:13Z").unwrap();
        assert_eq!(moment.as_str(), "2026-12-05T10:42:13.000Z");
        assert_eq!(
            Timestamp::parse_moment("2026-12-05T10:42:13.250Z").unwrap().unix_ms(),
            moment.unix_ms() + 250
        );
        for bad in [
            "2026-13-05T10:42:13Z",
            "2026-02-30T10:42:13Z",
            "2026-12-05T25:00:00Z",
            "1969-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "yesterday",
            "",
        ] {
            assert!(Timestamp::parse_moment(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "2026-11-30",
            "2026-11-30 07:33:51.123Z",
            "2026-11-30T07:33:51Z",
            "x026-11-30T07:33:51.123Z",
            "2026-13-05T10:42:13.000Z",
            "2026-00-05T10:42:13.000Z",
            "2026-02-29T10:42:13.000Z",
            "2026-04-31T10:42:13.000Z",
            "2026-12-00T10:42:13.000Z",
            "2026-12-05T24:00:00.000Z",
            "2026-12-05T10:60:00.000Z",
            "2026-12-05T10:42:60.000Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Timestamp::parse("2028-02-29T23:59:59.999Z").is_ok(), "a leap day");
        assert_eq!(days_in_month(2028, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2026, 12), 31);
    }

    #[test]
    fn a_test_clock_moves_only_when_told_and_clones_share_it() {
        let start = Timestamp::parse("2026-12-31T23:59:59.500Z").unwrap();
        let clock = TestClock::at(&start);
        let shared = clock.shared();
        assert_eq!(shared.now(), start);
        clock.advance(Duration::from_millis(600));
        assert_eq!(shared.now().as_str(), "2027-01-01T00:00:00.100Z");
        assert_eq!(start.plus(Duration::from_secs(86_400)).date(), "2027-01-01");
        assert_eq!(start.minus(Duration::from_secs(86_400)).date(), "2026-12-30");
        clock.set(&start);
        assert_eq!(clock.now(), start);
        assert!(SystemClock.now() > start.minus(Duration::from_secs(86_400 * 365)));
    }
}
