//! Every wire protocol version a session may negotiate: a moq-lite version or an IETF
//! moq-transport draft. Transports offer them by ALPN, WebTransport protocol or qmux
//! subprotocol, and configurations name them (`moq-lite-05`, `moq-transport-16`).

use std::{fmt, str::FromStr};

use crate::{Version, ietf};

/// A moq-lite version or a moq-transport draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// moq-lite.
    Lite(Version),
    /// IETF moq-transport.
    Ietf(ietf::Version),
}

impl Protocol {
    /// Every protocol chosen by its own ALPN, in preference order: moq-lite newest
    /// first, then moq-transport newest first (as the reference relay offers them).
    pub const PREFERRED: [Protocol; 13] = [
        Self::Lite(Version::Lite06),
        Self::Lite(Version::Lite05),
        Self::Lite(Version::Lite04),
        Self::Lite(Version::Lite03),
        Self::Ietf(ietf::Version::Draft22),
        Self::Ietf(ietf::Version::Draft21),
        Self::Ietf(ietf::Version::Draft20),
        Self::Ietf(ietf::Version::Draft19),
        Self::Ietf(ietf::Version::Draft18),
        Self::Ietf(ietf::Version::Draft17),
        Self::Ietf(ietf::Version::Draft16),
        Self::Ietf(ietf::Version::Draft15),
        Self::Ietf(ietf::Version::Draft14),
    ];

    /// The ALPN (and WebTransport protocol) identifier; `moql` for the in-band
    /// moq-lite-01/02.
    pub fn alpn(self) -> &'static str {
        match self {
            Self::Lite(v) => v.alpn(),
            Self::Ietf(v) => v.alpn(),
        }
    }

    /// The name used in configuration, logs and metric labels: `moq-lite-05`,
    /// `moq-transport-16`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lite(v) => v.name(),
            Self::Ietf(v) => match v.number() {
                14 => "moq-transport-14",
                15 => "moq-transport-15",
                16 => "moq-transport-16",
                17 => "moq-transport-17",
                18 => "moq-transport-18",
                19 => "moq-transport-19",
                20 => "moq-transport-20",
                21 => "moq-transport-21",
                _ => "moq-transport-22",
            },
        }
    }

    /// The protocol an ALPN selects, if we speak it. `moql` selects none: it means
    /// "negotiate in-band".
    pub fn from_alpn(alpn: &[u8]) -> Option<Self> {
        Version::from_alpn(alpn)
            .map(Self::Lite)
            .or_else(|| ietf::Version::from_alpn(alpn).map(Self::Ietf))
    }

    /// The moq-lite version, if this is one.
    pub fn lite(self) -> Option<Version> {
        match self {
            Self::Lite(v) => Some(v),
            Self::Ietf(_) => None,
        }
    }

    /// The moq-transport draft, if this is one.
    pub fn ietf(self) -> Option<ietf::Version> {
        match self {
            Self::Lite(_) => None,
            Self::Ietf(v) => Some(v),
        }
    }

    /// Chosen by its own ALPN (everything but the in-band moq-lite-01/02).
    pub fn has_alpn(self) -> bool {
        !matches!(self, Self::Lite(v) if v.is_in_band())
    }
}

impl From<Version> for Protocol {
    fn from(v: Version) -> Self {
        Self::Lite(v)
    }
}

impl From<ietf::Version> for Protocol {
    fn from(v: ietf::Version) -> Self {
        Self::Ietf(v)
    }
}

impl PartialEq<Version> for Protocol {
    fn eq(&self, other: &Version) -> bool {
        *self == Self::Lite(*other)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The string named no protocol version we speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown version '{0}' (expected moq-lite-01 … moq-lite-06 or moq-transport-14 … moq-transport-22; ALPNs such as moqt-16 work too)"
)]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    /// A name (`moq-lite-02`, `moq-transport-16`) or an ALPN (`moqt-16`, `moq-00`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::from_name(s)
            .map(Self::Lite)
            .or_else(|| s.parse::<ietf::Version>().ok().map(Self::Ietf))
            .ok_or_else(|| UnknownProtocol(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_alpns_and_order() {
        for p in Protocol::PREFERRED {
            assert_eq!(Protocol::from_alpn(p.alpn().as_bytes()), Some(p));
            assert_eq!(p.name().parse::<Protocol>(), Ok(p));
            assert_eq!(p.alpn().parse::<Protocol>(), Ok(p));
            assert!(p.has_alpn());
        }
        for v in ietf::Version::ALL {
            assert_eq!(Protocol::Ietf(v).name(), v.to_string());
        }
        assert_eq!(
            "moq-lite-02".parse::<Protocol>(),
            Ok(Protocol::Lite(Version::Lite02))
        );
        assert!(!Protocol::Lite(Version::Lite02).has_alpn());
        assert_eq!(Protocol::from_alpn(b"moql"), None);
        assert_eq!(
            Protocol::from_alpn(b"moq-00"),
            Some(Protocol::Ietf(ietf::Version::Draft14))
        );
        let err = "moq-transport-13".parse::<Protocol>().unwrap_err();
        assert!(err.to_string().contains("moq-transport-13"));
        // moq-lite before moq-transport, each newest first.
        assert_eq!(Protocol::PREFERRED[0], Version::Lite06);
        assert_eq!(Protocol::PREFERRED[4], Protocol::Ietf(ietf::Version::Draft22));
        assert_eq!(
            Protocol::PREFERRED.len(),
            Version::ALL.len() + ietf::Version::ALL.len()
        );
    }
}
