//! Reading a TIMESTAMP field: Unix epoch seconds within a plausible range, or — by explicit
//! choice of the caller — milliseconds, microseconds or nanoseconds converted to seconds.
//!
//! Why a range: the column's type (`i64`) holds values up to year 292 billion, and the most common
//! mistake in practice is a column written in milliseconds (`1.7e12`), which would load as dates
//! around year 55,000 and silently break sessionizing (every gap looks 1,000 times longer). So a
//! value past [`MAX_TIMESTAMP`] (the end of year 2199) is an error that says which finer unit
//! would give a plausible date; converting is the caller's explicit choice (`TimestampUnit`).

use std::str::FromStr;

use crate::error::{Error, Result};

/// The last accepted second: 2199-12-31 23:59:59 UTC.
pub const MAX_TIMESTAMP: i64 = 7_258_118_399;

/// The first second a unit suggestion may point to (1990-01-01 00:00:00 UTC): a finer unit is
/// only suggested when it turns the value into a date of the recorded-interactions era.
const PLAUSIBLE_FROM: i64 = 631_152_000;

/// The unit of a file's TIMESTAMP column; values are converted to whole seconds (rounded down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampUnit {
    /// Unix epoch seconds (the Personalize schema; the default).
    #[default]
    Seconds,
    /// Unix epoch milliseconds.
    Milliseconds,
    /// Unix epoch microseconds.
    Microseconds,
    /// Unix epoch nanoseconds.
    Nanoseconds,
}

impl TimestampUnit {
    const ALL: [TimestampUnit; 4] = [
        TimestampUnit::Seconds,
        TimestampUnit::Milliseconds,
        TimestampUnit::Microseconds,
        TimestampUnit::Nanoseconds,
    ];

    /// The short name used by the Python API and the CLI (`s`, `ms`, `us`, `ns`).
    pub fn name(self) -> &'static str {
        match self {
            TimestampUnit::Seconds => "s",
            TimestampUnit::Milliseconds => "ms",
            TimestampUnit::Microseconds => "us",
            TimestampUnit::Nanoseconds => "ns",
        }
    }

    fn words(self) -> &'static str {
        match self {
            TimestampUnit::Seconds => "seconds",
            TimestampUnit::Milliseconds => "milliseconds",
            TimestampUnit::Microseconds => "microseconds",
            TimestampUnit::Nanoseconds => "nanoseconds",
        }
    }

    /// Units in one second.
    fn per_second(self) -> i64 {
        match self {
            TimestampUnit::Seconds => 1,
            TimestampUnit::Milliseconds => 1_000,
            TimestampUnit::Microseconds => 1_000_000,
            TimestampUnit::Nanoseconds => 1_000_000_000,
        }
    }

    /// The largest accepted raw value in this unit (the last second of [`MAX_TIMESTAMP`]).
    pub fn max_raw(self) -> i64 {
        MAX_TIMESTAMP * self.per_second() + (self.per_second() - 1)
    }

    /// What a field in this unit must be, for error messages.
    fn expected(self) -> String {
        format!(
            "Unix epoch {} from 0 to {} (1970-01-01 to 2199-12-31 UTC)",
            self.words(),
            self.max_raw()
        )
    }
}

impl FromStr for TimestampUnit {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|u| u.name() == name)
            .ok_or_else(|| {
                Error::invalid_argument(
                    "timestamp_unit",
                    format!("expected one of \"s\", \"ms\", \"us\", \"ns\", found {name:?}"),
                )
            })
    }
}

/// Parses a non-negative integer of ASCII digits (an optional leading `+`); `None` for anything
/// else, including values past `i64::MAX`.
#[inline]
fn parse_digits(raw: &[u8]) -> Option<i64> {
    let digits = raw.strip_prefix(b"+").unwrap_or(raw);
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(value)
}

/// Reads a raw TIMESTAMP field given in `unit` as whole Unix seconds (rounded down); the error
/// says what was expected and, for a value too large to be seconds, which unit it looks like.
#[inline]
pub(crate) fn read_timestamp(raw: &[u8], unit: TimestampUnit) -> std::result::Result<i64, String> {
    let Some(value) = parse_digits(raw) else {
        return Err(format!(
            "expected a non-negative integer: {}",
            unit.expected()
        ));
    };
    if value <= unit.max_raw() {
        // Seconds, the common case, skip the division (this runs once per row).
        return Ok(match unit {
            TimestampUnit::Seconds => value,
            _ => value / unit.per_second(),
        });
    }
    let mut message = format!("out of range: expected {}", unit.expected());
    let finer = TimestampUnit::ALL
        .into_iter()
        .filter(|u| u.per_second() > unit.per_second())
        .find(|u| (PLAUSIBLE_FROM..=MAX_TIMESTAMP).contains(&(value / u.per_second())));
    if let Some(finer) = finer {
        message.push_str(&format!(
            "; as {} it is {}: pass timestamp_unit=\"{}\" (CLI: --timestamp-unit {}) to read the \
             column in {}",
            finer.words(),
            utc(value / finer.per_second()),
            finer.name(),
            finer.name(),
            finer.words()
        ));
    }
    Err(message)
}

/// `seconds` (Unix epoch) as a UTC date and time, `YYYY-MM-DD hh:mm:ss UTC` (proleptic Gregorian
/// calendar; Howard Hinnant's `civil_from_days`).
pub fn utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let time = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        time / 3_600,
        time % 3_600 / 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(MAX_TIMESTAMP), "2199-12-31 23:59:59 UTC");
        assert_eq!(utc(PLAUSIBLE_FROM), "1990-01-01 00:00:00 UTC");
    }

    #[test]
    fn seconds_up_to_2199_are_read_as_they_are() {
        let s = TimestampUnit::Seconds;
        assert_eq!(read_timestamp(b"0", s), Ok(0));
        assert_eq!(read_timestamp(b"+17", s), Ok(17));
        assert_eq!(read_timestamp(b"7258118399", s), Ok(MAX_TIMESTAMP));
        let m = read_timestamp(b"7258118400", s).unwrap_err();
        assert!(
            m.contains("out of range") && m.contains("0 to 7258118399"),
            "{m}"
        );
    }

    #[test]
    fn every_i64_is_parsed_and_the_message_states_the_real_range() {
        let m = read_timestamp(b"9223372036854775807", TimestampUnit::Seconds).unwrap_err();
        assert!(
            m.starts_with("out of range") && m.contains("2199-12-31") && !m.contains("as "),
            "{m}"
        );
        let m = read_timestamp(b"9223372036854775808", TimestampUnit::Seconds).unwrap_err();
        assert!(m.starts_with("expected a non-negative integer"), "{m}");
        for bad in [&b""[..], b"-1", b"1.5", b"1e9", b" 1"] {
            assert!(read_timestamp(bad, TimestampUnit::Seconds).is_err());
        }
    }

    #[test]
    fn finer_units_are_suggested_and_converted_on_request() {
        let m = read_timestamp(b"1700000000123", TimestampUnit::Seconds).unwrap_err();
        assert!(
            m.contains("as milliseconds it is 2023-11-14 22:13:20 UTC")
                && m.contains("timestamp_unit=\"ms\""),
            "{m}"
        );
        let m = read_timestamp(b"1700000000123456", TimestampUnit::Seconds).unwrap_err();
        assert!(m.contains("timestamp_unit=\"us\""), "{m}");
        let m = read_timestamp(b"1700000000123456789", TimestampUnit::Milliseconds).unwrap_err();
        assert!(m.contains("timestamp_unit=\"ns\""), "{m}");
        assert_eq!(
            read_timestamp(b"1700000000999", TimestampUnit::Milliseconds),
            Ok(1_700_000_000)
        );
        assert_eq!(
            read_timestamp(b"1700000000999999999", TimestampUnit::Nanoseconds),
            Ok(1_700_000_000)
        );
        let ns = TimestampUnit::Nanoseconds;
        assert_eq!(
            read_timestamp(ns.max_raw().to_string().as_bytes(), ns),
            Ok(MAX_TIMESTAMP)
        );
    }

    #[test]
    fn unit_names() {
        for unit in TimestampUnit::ALL {
            assert_eq!(unit.name().parse::<TimestampUnit>().unwrap(), unit);
        }
        let e = "sec".parse::<TimestampUnit>().unwrap_err().to_string();
        assert!(e.starts_with("timestamp_unit: expected one of"), "{e}");
    }
}
