//! Value types and parsers shared by every section: durations, sizes, addresses, and the
//! "one string or a list of strings" shape that operators' files use interchangeably.
//!
//! Every parser returns a `String` error that says what was wrong and shows a correct
//! example; the loader adds the file, line and key in front of it.

use std::{
    fmt,
    marker::PhantomData,
    net::{SocketAddr, ToSocketAddrs},
    str::FromStr,
    time::Duration,
};

use serde::{Deserialize, Deserializer, de};

const NANOS_PER_SEC: f64 = 1e9;

/// Parse a human duration: `"30s"`, `"250ms"`, `"1m"`, `"1h"`, `"1.5s"`, `"1m30s"`, `"2d"`.
///
/// A bare `"0"` is zero; any other number needs a unit, so that `"250"` is never
/// silently read as 250 seconds when milliseconds were meant.
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

    let mut total_nanos = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(format!(
                "'{input}' is not a duration: write e.g. '30s', '250ms', '1m' or '1h'"
            ));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("'{input}': '{}' is not a number", &rest[..number_len]))?;
        rest = rest[number_len..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let scale = match unit {
            "ns" | "nsec" => 1.0,
            "us" | "µs" | "usec" => 1e3,
            "ms" | "msec" | "millis" => 1e6,
            "s" | "sec" | "secs" | "second" | "seconds" => NANOS_PER_SEC,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0 * NANOS_PER_SEC,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0 * NANOS_PER_SEC,
            "d" | "day" | "days" => 86400.0 * NANOS_PER_SEC,
            "" => {
                return Err(format!(
                    "'{input}': the number {number} has no unit (use ms, s, m, h or d, e.g. '30s')"
                ));
            }
            other => {
                return Err(format!(
                    "'{input}': unknown unit '{other}' (use ms, s, m, h or d, e.g. '30s')"
                ));
            }
        };
        total_nanos += number * scale;
    }
    // A u64 of nanoseconds is 584 years; anything beyond that is a typo.
    if !total_nanos.is_finite() || total_nanos >= u64::MAX as f64 {
        return Err(format!("'{input}' is too long a duration"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

/// Format a duration the way the parser reads it back: `"30s"`, `"250ms"`, `"1m30s"`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    if d.subsec_nanos() != 0 {
        if d.as_secs() == 0 && d.subsec_nanos().is_multiple_of(1_000_000) {
            return format!("{}ms", d.subsec_millis());
        }
        return format!("{}s", d.as_secs_f64());
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// Parse a size in bytes: `"8GiB"`, `"512MiB"`, `"100MB"`, `"1.5 GiB"`, `"4096"`.
///
/// `KB`/`MB`/`GB`/`TB` are powers of 1000 and `KiB`/`MiB`/`GiB`/`TiB` powers of 1024
/// (units are case-insensitive). A single-letter unit such as `"8G"` is refused because
/// the two readings differ by 7%.
pub fn parse_bytes(input: &str) -> Result<u64, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty size: write e.g. '8GiB', '512MiB' or '100MB'".to_string());
    }
    if s.starts_with('-') {
        return Err(format!("'{input}': a size can't be negative"));
    }
    let number_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    if number_len == 0 {
        return Err(format!(
            "'{input}' is not a size: write e.g. '8GiB', '512MiB' or '100MB'"
        ));
    }
    let number: f64 = s[..number_len]
        .parse()
        .map_err(|_| format!("'{input}': '{}' is not a number", &s[..number_len]))?;
    let unit = s[number_len..].trim();
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "k" | "m" | "g" | "t" => {
            return Err(format!(
                "'{input}': unit '{unit}' is ambiguous: write '{number}{u}B' (powers of 1000) or \
                 '{number}{u}iB' (powers of 1024)",
                u = unit.to_ascii_uppercase()
            ));
        }
        _ => {
            return Err(format!(
                "'{input}': unknown unit '{unit}' (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB, e.g. '8GiB')"
            ));
        }
    };
    let bytes = number * scale;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("'{input}' is too large a size"));
    }
    Ok(bytes as u64)
}

/// Format a byte count with the largest binary unit that divides it exactly.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, size) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// An amount of memory: a number of bytes, or a share of the machine's memory (`"75%"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryLimit {
    /// An absolute size in bytes.
    Bytes(u64),
    /// A fraction of system memory, in `(0, 1]`.
    Fraction(f64),
}

impl MemoryLimit {
    /// The limit in bytes on a machine (or cgroup) with `total` bytes of memory.
    pub fn resolve(self, total: u64) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes,
            Self::Fraction(fraction) => (total as f64 * fraction) as u64,
        }
    }
}

impl FromStr for MemoryLimit {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let s = input.trim();
        let Some(percent) = s.strip_suffix('%') else {
            return parse_bytes(s).map(Self::Bytes);
        };
        let value: f64 = percent
            .trim()
            .parse()
            .map_err(|_| format!("'{input}' is not a percentage: write e.g. '75%'"))?;
        if !(value > 0.0 && value <= 100.0) {
            return Err(format!(
                "'{input}': a share of memory must be more than 0% and at most 100%"
            ));
        }
        Ok(Self::Fraction(value / 100.0))
    }
}

impl fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(bytes) => f.write_str(&format_bytes(*bytes)),
            Self::Fraction(fraction) => write!(f, "{}% of memory", fraction * 100.0),
        }
    }
}

impl<'de> Deserialize<'de> for MemoryLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = MemoryLimit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like \"8GiB\", a share of memory like \"75%\", or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MemoryLimit, E> {
                u64::try_from(v)
                    .map(MemoryLimit::Bytes)
                    .map_err(|_| E::custom(format!("'{v}': a size can't be negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MemoryLimit, E> {
                Ok(MemoryLimit::Bytes(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<MemoryLimit, E> {
                Err(E::custom(format!(
                    "'{v}' is ambiguous: write a size like \"8GiB\" or a share of memory like \"75%\""
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MemoryLimit, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A listen or bind address: `"[::]:443"`, `"0.0.0.0:4443"` or `"relay.example.com:443"`.
///
/// A host name is kept as written and resolved when the socket is bound.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// Host as written, without brackets: an IP literal or a DNS name.
    pub host: String,
    /// Port; `0` asks the OS for an ephemeral port (tests).
    pub port: u16,
}

impl Address {
    /// The socket address if the host is an IP literal (no DNS needed).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let ip = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }

    /// Resolve the address (DNS for host names), as `bind` would.
    pub fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        if let Some(addr) = self.socket_addr() {
            return Ok(vec![addr]);
        }
        Ok((self.host.as_str(), self.port).to_socket_addrs()?.collect())
    }
}

impl FromStr for Address {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let s = input.trim();
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        if s.contains("://") || s.contains('/') {
            return Err(format!(
                "'{input}' is a URL, not an address: write host:port, e.g. '[::]:443'"
            ));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!(
                "'{input}' has no port: write host:port, e.g. '{s}:443' or '[::]:443'"
            ));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("'{input}': '{port}' is not a port number (0-65535)"))?;
        if let Some(ip) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return Err(format!("'{input}': '{ip}' is not an IPv6 address"));
        }
        if host.contains(':') {
            return Err(format!(
                "'{input}': put an IPv6 address in brackets, e.g. '[::1]:443'"
            ));
        }
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!(
                "'{input}' has no host: write host:port, e.g. '[::]:{port}'"
            ));
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FromStrVisitor::<Address>::new("an address like \"[::]:443\""))
    }
}

/// A SHA-256 certificate fingerprint, normalised to 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub String);

impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let hex: String = input
            .trim()
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_lowercase();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "'{input}' is not a SHA-256 fingerprint (64 hex digits, as served at /certificate.sha256)"
            ));
        }
        Ok(Self(hex))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A URL fit for logs and messages: without its query or fragment (where `?jwt=` tokens
/// live) and without user info (`user:password@`).
pub fn redact_url(url: &str) -> String {
    let base = url.split(['?', '#']).next().unwrap_or_default();
    match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => base.to_string(),
    }
}

/// Parse a moq-lite version name such as `"moq-lite-04"` (clap value parser).
pub fn parse_version(s: &str) -> Result<moq_proto::Version, String> {
    s.trim()
        .parse()
        .map_err(|e: moq_proto::UnknownVersion| e.to_string())
}

/// Parse a duration that may also be a bare number of seconds (`stats.interval` was an
/// integer number of seconds).
pub fn parse_seconds_or_duration(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => parse_duration(s),
    }
}

/// Visits a string and parses it with `FromStr`.
struct FromStrVisitor<T> {
    expecting: &'static str,
    _type: PhantomData<T>,
}

impl<T> FromStrVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        Self {
            expecting,
            _type: PhantomData,
        }
    }
}

impl<T: FromStr<Err: fmt::Display>> de::Visitor<'_> for FromStrVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

/// Serde helpers used with `#[serde(deserialize_with = ...)]`.
pub mod de_with {
    use super::*;

    /// An optional duration: a string like `"30s"`, or an integer number of seconds.
    pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like \"30s\", \"250ms\" or \"1m\", or a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom(format!("'{v}': a duration can't be negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Duration::try_from_secs_f64(v)
                    .map_err(|_| E::custom(format!("'{v}' is not a valid number of seconds")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_duration(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor).map(Some)
    }

    /// A list given either as one string or as a list of strings, each parsed with `FromStr`.
    pub fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr<Err: fmt::Display>,
    {
        struct Visitor<T>(PhantomData<T>);
        impl<'de, T: FromStr<Err: fmt::Display>> de::Visitor<'de> for Visitor<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
                Ok(vec![v.parse().map_err(E::custom)?])
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item.parse().map_err(de::Error::custom)?);
                }
                Ok(out)
            }
        }
        d.deserialize_any(Visitor(PhantomData))
    }

    /// An optional string that may also be written as a bare integer (`quic_lb_id = 7`).
    pub fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }
        }
        d.deserialize_any(Visitor).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 2d "), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
    }

    #[test]
    fn duration_errors_say_what_is_wrong() {
        let err = |s| parse_duration(s).unwrap_err();
        assert!(err("30").contains("has no unit"), "{}", err("30"));
        assert!(err("30").contains("'30s'"));
        assert!(err("30x").contains("unknown unit 'x'"), "{}", err("30x"));
        assert!(err("-5s").contains("negative"));
        assert!(err("fast").contains("not a duration"));
        assert!(err("").contains("empty"));
        assert!(err("1..2s").contains("not a number"));
        assert!(err("99999999999999999999d").contains("too long"));
    }

    #[test]
    fn duration_format_round_trips() {
        for s in ["30s", "250ms", "1m30s", "1h", "2d", "0s", "1.5s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(format_duration(d), s);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("8GiB"), Ok(8 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("512MB"), Ok(512_000_000));
        assert_eq!(parse_bytes("100MB"), Ok(100_000_000));
        assert_eq!(parse_bytes("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1kib"), Ok(1024));
        assert_eq!(parse_bytes("7B"), Ok(7));
        assert_eq!(format_bytes(8 << 30), "8GiB");
        assert_eq!(format_bytes(1000), "1000B");
    }

    #[test]
    fn size_errors_say_what_is_wrong() {
        let err = |s| parse_bytes(s).unwrap_err();
        assert!(err("8G").contains("ambiguous"), "{}", err("8G"));
        assert!(err("8G").contains("'8GB'") && err("8G").contains("'8GiB'"));
        assert!(err("8 gigs").contains("unknown unit 'gigs'"));
        assert!(err("-1GiB").contains("negative"));
        assert!(err("lots").contains("not a size"));
    }

    #[test]
    fn memory_limits() {
        assert_eq!("75%".parse(), Ok(MemoryLimit::Fraction(0.75)));
        assert_eq!("8GiB".parse(), Ok(MemoryLimit::Bytes(8 << 30)));
        assert_eq!(MemoryLimit::Fraction(0.5).resolve(1000), 500);
        assert_eq!(MemoryLimit::Bytes(10).resolve(1000), 10);
        assert!(
            "150%"
                .parse::<MemoryLimit>()
                .unwrap_err()
                .contains("at most 100%")
        );
        assert!("0%".parse::<MemoryLimit>().unwrap_err().contains("more than 0%"));
        assert!(
            "x%".parse::<MemoryLimit>()
                .unwrap_err()
                .contains("not a percentage")
        );
        assert_eq!(MemoryLimit::Fraction(0.75).to_string(), "75% of memory");
    }

    #[test]
    fn addresses() {
        let a: Address = "[::]:4443".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::", 4443));
        assert_eq!(a.to_string(), "[::]:4443");
        assert!(a.socket_addr().is_some());
        let a: Address = "relay.example.com:443".parse().unwrap();
        assert_eq!(a.to_string(), "relay.example.com:443");
        assert!(a.socket_addr().is_none());
        assert_eq!("127.0.0.1:0".parse::<Address>().unwrap().port, 0);

        let err = |s: &str| s.parse::<Address>().unwrap_err();
        assert!(err("localhost").contains("no port"));
        assert!(err("https://x:443/").contains("is a URL"));
        assert!(err("::1:443").contains("brackets"));
        assert!(err("[zz]:443").contains("not an IPv6"));
        assert!(err("host:99999").contains("not a port"));
        assert!(err(":443").contains("no host"));
    }

    #[test]
    fn redacted_urls_lose_tokens_and_passwords() {
        assert_eq!(
            redact_url("https://peer:443/?jwt=secret&cost=2"),
            "https://peer:443/"
        );
        assert_eq!(
            redact_url("https://user:pw@auth.example.com/check"),
            "https://auth.example.com/check"
        );
        assert_eq!(redact_url("peer:443/?jwt=secret"), "peer:443/");
        assert_eq!(redact_url("https://peer/#jwt=x"), "https://peer/");
    }

    #[test]
    fn fingerprints() {
        let hex = "AB".repeat(32);
        assert_eq!(hex.parse::<Fingerprint>().unwrap().0, "ab".repeat(32));
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(colons.parse::<Fingerprint>().unwrap().0, "ab".repeat(32));
        assert!(
            "abc"
                .parse::<Fingerprint>()
                .unwrap_err()
                .contains("64 hex digits")
        );
    }
}
