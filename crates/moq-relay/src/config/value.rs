//! Value types and parsers shared by every section: sizes and shares of memory,
//! addresses, fingerprints, and the serde adapters for durations.
//!
//! Every parser returns a `String` error that says what was wrong and shows a correct
//! example; the loader adds the file, line and key in front of it. Durations and sizes
//! are `moq-units`, the grammar the client and the bench share.

use std::{
    fmt,
    net::{SocketAddr, ToSocketAddrs},
    str::FromStr,
    time::Duration,
};

pub use moq_units::{format_bytes, format_duration, parse_bytes, parse_duration};
use serde::{Deserialize, Deserializer, de};

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
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde_with::DeserializeFromStr)]
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

/// Parse a version name such as `"moq-lite-04"` or `"moq-transport-16"` (clap value
/// parser; ALPNs such as `moqt-16` work too).
pub(super) fn parse_version(s: &str) -> Result<moq_proto::Protocol, String> {
    s.trim()
        .parse()
        .map_err(|e: moq_proto::UnknownProtocol| e.to_string())
}

/// A duration in a config file: a string like `"30s"` (see [`parse_duration`]), or a
/// number of seconds. Use as `#[serde_as(as = "Option<HumanDuration>")]`.
#[derive(Debug)]
pub(super) struct HumanDuration;

impl<'de> serde_with::DeserializeAs<'de, Duration> for HumanDuration {
    fn deserialize_as<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
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
        d.deserialize_any(Visitor)
    }
}

/// A size in a config file: a string like `"32MiB"` (see [`parse_bytes`]), or a number
/// of bytes. Use as `#[serde_as(as = "Option<HumanSize>")]`.
#[derive(Debug)]
pub(super) struct HumanSize;

impl<'de> serde_with::DeserializeAs<'de, u64> for HumanSize {
    fn deserialize_as<D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like \"32MiB\" or \"100MB\", or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
                u64::try_from(v).map_err(|_| E::custom(format!("'{v}': a size can't be negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
                parse_bytes(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
