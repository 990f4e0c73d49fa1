//! Human units on the command line and in impairment specs: `40ms`, `4mbit`, `64k`, `1%`.

use std::time::Duration;

/// A value that is not a valid duration, rate, size or probability.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// The number part does not parse.
    #[error("'{0}' does not start with a number")]
    Number(String),
    /// The unit is not one this parser knows.
    #[error("unknown unit in '{text}' (use {expected})")]
    Unit {
        /// The whole value.
        text: String,
        /// The units that would have worked.
        expected: &'static str,
    },
    /// A number that is out of range for the quantity.
    #[error("'{0}' is out of range")]
    Range(String),
}

/// Split `12.5ms` into `(12.5, "ms")`, the unit lowercased.
fn split(text: &str) -> Result<(f64, String), UnitError> {
    let lower = text.trim().to_ascii_lowercase();
    let end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(end);
    let value = number.parse().map_err(|_| UnitError::Number(text.to_string()))?;
    finite(value, text).map(|v| (v, unit.trim().to_string()))
}

fn finite(value: f64, text: &str) -> Result<f64, UnitError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(UnitError::Range(text.to_string()))
    }
}

/// `40ms`, `1.5s`, `250us`, `2m`, or a bare number of seconds.
pub fn duration(text: &str) -> Result<Duration, UnitError> {
    let (value, unit) = split(text)?;
    let seconds = match unit.as_str() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(UnitError::Unit {
                text: text.to_string(),
                expected: "us, ms, s, m, h",
            });
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| UnitError::Range(text.to_string()))
}

/// Bits per second: `4mbit`, `500kbit`, `1gbit`, `64000` (decimal prefixes, as `tc` uses).
pub fn bitrate(text: &str) -> Result<u64, UnitError> {
    let (value, unit) = split(text)?;
    let unit = unit.trim_end_matches("ps").trim_end_matches("/s");
    let scale = match unit {
        "" | "b" | "bit" => 1.0,
        "k" | "kb" | "kbit" => 1e3,
        "m" | "mb" | "mbit" => 1e6,
        "g" | "gb" | "gbit" => 1e9,
        _ => {
            return Err(UnitError::Unit {
                text: text.to_string(),
                expected: "bit, kbit, mbit, gbit",
            });
        }
    };
    Ok((value * scale).round() as u64)
}

/// Bytes: `1500`, `64k` / `64kib` (1024), `1m` / `1mib` (1024²).
pub fn bytes(text: &str) -> Result<usize, UnitError> {
    let (value, unit) = split(text)?;
    let scale = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        _ => {
            return Err(UnitError::Unit {
                text: text.to_string(),
                expected: "b, k, m",
            });
        }
    };
    let v = (value * scale).round();
    if v > usize::MAX as f64 / 2.0 {
        return Err(UnitError::Range(text.to_string()));
    }
    Ok(v as usize)
}

/// A probability: `1%`, `0.5%` or a fraction `0.01`. Range checks are the caller's.
pub fn probability(text: &str) -> Result<f64, UnitError> {
    let (value, unit) = split(text)?;
    match unit.as_str() {
        "%" => Ok(value / 100.0),
        "" => Ok(value),
        _ => Err(UnitError::Unit {
            text: text.to_string(),
            expected: "% or a fraction",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("40ms"), Ok(Duration::from_millis(40)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert!(matches!(duration("soon"), Err(UnitError::Number(_))));
        assert!(matches!(duration("4 weeks"), Err(UnitError::Unit { .. })));
        assert!(matches!(duration("-4ms"), Err(UnitError::Range(_))));
        assert!(matches!(
            duration("9999999999999999999999h"),
            Err(UnitError::Range(_))
        ));
    }

    #[test]
    fn bitrates() {
        assert_eq!(bitrate("4mbit"), Ok(4_000_000));
        assert_eq!(bitrate("500kbit"), Ok(500_000));
        assert_eq!(bitrate("2.5Mbps"), Ok(2_500_000));
        assert_eq!(bitrate("64000"), Ok(64_000));
        assert!(matches!(bitrate("4xbit"), Err(UnitError::Unit { .. })));
        assert!(matches!(bitrate("fast"), Err(UnitError::Number(_))));
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes("1500"), Ok(1500));
        assert_eq!(bytes("64k"), Ok(65536));
        assert_eq!(bytes("64KiB"), Ok(65536));
        assert_eq!(bytes("1m"), Ok(1 << 20));
        assert!(matches!(bytes("3 apples"), Err(UnitError::Unit { .. })));
        assert!(matches!(
            bytes("99999999999999999999999m"),
            Err(UnitError::Range(_))
        ));
    }

    #[test]
    fn probabilities() {
        assert_eq!(probability("1%"), Ok(0.01));
        assert_eq!(probability("0.05"), Ok(0.05));
        assert_eq!(probability("50 %"), Ok(0.5));
        assert!(matches!(probability("1‰"), Err(UnitError::Unit { .. })));
        assert!(matches!(probability("-1%"), Err(UnitError::Range(_))));
    }
}
