//! `moq-units`: durations and sizes as people write them, in one grammar for the relay's
//! config, the `moq` client and `moq-bench`. Parsing is `humantime` (durations) and
//! `bytesize` (sizes); this crate only adds the refusals that keep a typo from becoming
//! a silently wrong value, and error messages that show a correct example.
//!
//! - Durations: `"30s"`, `"250ms"`, `"1m30s"`, `"1h 5m"`, `"4.5s"`, `"7d"`, `"2w"`; a bare
//!   `"0"` is zero, any other bare number is refused (seconds or milliseconds?).
//! - Sizes: `"8GiB"`, `"512MiB"`, `"100MB"`, `"1.5 GiB"`, `"4096"` (bytes); `KB`, `MB`, ...
//!   are powers of 1000 and `KiB`, `MiB`, ... powers of 1024; a one-letter unit such as
//!   `"8G"` is refused because the two readings differ by 7%.

use std::time::Duration;

use bytesize::ByteSize;

/// Parse a duration; see the crate documentation for the grammar.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration: write e.g. '30s', '250ms', '1m' or '1h'".to_string());
    }
    if s.starts_with('-') {
        return Err(format!("'{input}': a duration can't be negative"));
    }
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        if s.parse::<f64>() == Ok(0.0) {
            return Ok(Duration::ZERO);
        }
        return Err(format!(
            "'{input}' has no unit: write '{s}s' for seconds or '{s}ms' for milliseconds"
        ));
    }
    humantime::parse_duration(s).map_err(|err| match err {
        humantime::DurationError::NumberOverflow => format!("'{input}' is too long a duration"),
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("'{input}': unknown unit '{unit}' (use ms, s, m, h or d, e.g. '30s')")
        }
        humantime::DurationError::NumberExpected(_) | humantime::DurationError::InvalidCharacter(_) => {
            format!("'{input}' is not a duration: write e.g. '30s', '250ms', '1m' or '1h'")
        }
        err => format!("'{input}' is not a duration ({err}): write e.g. '30s', '250ms', '1m' or '1h'"),
    })
}

/// Format a duration so that [`parse_duration`] reads it back: `"30s"`, `"250ms"`, `"1m 30s"`.
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_string();
    }
    humantime::format_duration(duration).to_string()
}

/// Parse a size in bytes; see the crate documentation for the grammar.
pub fn parse_bytes(input: &str) -> Result<u64, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty size: write e.g. '8GiB', '512MiB' or '100MB'".to_string());
    }
    if s.starts_with('-') {
        return Err(format!("'{input}': a size can't be negative"));
    }
    let unit = s
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
        .trim();
    if unit.len() == 1 && !unit.eq_ignore_ascii_case("b") {
        let number = &s[..s.len() - unit.len()].trim();
        let u = unit.to_ascii_uppercase();
        return Err(format!(
            "'{input}': unit '{unit}' is ambiguous: write '{number}{u}B' (powers of 1000) or '{number}{u}iB' \
             (powers of 1024)"
        ));
    }
    const UNITS: &str = "use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB, e.g. '8GiB'";
    if unit.len() == s.len() {
        return Err(format!(
            "'{input}' is not a size: write e.g. '8GiB', '512MiB' or '100MB'"
        ));
    }
    s.parse::<ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| format!("'{input}': unknown unit '{unit}' ({UNITS})"))
}

/// Format a byte count in binary units: `"8.0 GiB"`, `"512 B"`.
pub fn format_bytes(bytes: u64) -> String {
    ByteSize(bytes).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 5m"), Ok(Duration::from_secs(3900)));
        assert_eq!(parse_duration("4.5s"), Ok(Duration::from_millis(4500)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration(" 0 "), Ok(Duration::ZERO));
    }

    #[test]
    fn duration_refusals_say_what_to_write() {
        let err = |s| parse_duration(s).unwrap_err();
        assert!(
            err("250").contains("write '250s' for seconds or '250ms'"),
            "{}",
            err("250")
        );
        assert!(err("").contains("empty"));
        assert!(err("-1s").contains("negative"));
        assert_eq!(
            err("5 parsecs"),
            "'5 parsecs': unknown unit 'parsecs' (use ms, s, m, h or d, e.g. '30s')"
        );
        assert!(err("soon").contains("not a duration"));
        assert!(err("99999999999999999999d").contains("too long"));
    }

    #[test]
    fn durations_round_trip() {
        for d in [
            Duration::ZERO,
            Duration::from_millis(250),
            Duration::from_secs(90),
            Duration::from_secs(86_400 * 3),
        ] {
            assert_eq!(
                parse_duration(&format_duration(d)),
                Ok(d),
                "{}",
                format_duration(d)
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("8GiB"), Ok(8 << 30));
        assert_eq!(parse_bytes("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("100MB"), Ok(100_000_000));
        assert_eq!(parse_bytes("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("10B"), Ok(10));
        assert_eq!(format_bytes(8 << 30), "8.0 GiB");
    }

    #[test]
    fn size_refusals_say_what_to_write() {
        let err = |s| parse_bytes(s).unwrap_err();
        assert!(
            err("8G").contains("'8GB' (powers of 1000) or '8GiB'"),
            "{}",
            err("8G")
        );
        assert!(err("8 parsecs").contains("unknown unit 'parsecs'"));
        assert!(err("lots").contains("not a size"));
        assert!(err("-1MB").contains("negative"));
        assert!(err("").contains("empty"));
    }
}
