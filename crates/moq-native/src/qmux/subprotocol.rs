//! `Sec-WebSocket-Protocol` negotiation for moq over qmux.
//!
//! A subprotocol pairs a QMux wire format with a moq ALPN: `qmux-01.moq-lite-05`.
//! `@moq/net` 0.3.4 offers `qmux-02.`, `qmux-01.` and `qmux-00.` with each moq-lite
//! version it speaks, then the bare `qmux-02`, `qmux-01`, `qmux-00` and
//! `webtransport`. The reference relay answers with the newest moq version it
//! allows, on qmux-01 if offered, else qmux-00; a bare name means "negotiate the
//! version in a SETUP message" (moq-lite-01/02, which this WebSocket path does not
//! negotiate yet), so we refuse rather than pick one.

use moq_proto::Protocol;

use super::Wire;

/// What a server answers to an acceptable offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The value for the `Sec-WebSocket-Protocol` response header: exactly one of
    /// the client's offers.
    pub subprotocol: String,
    /// The QMux wire format it implies.
    pub wire: Wire,
    /// The protocol version it implies.
    pub version: Protocol,
}

/// Why a server refuses a WebSocket upgrade. Answer with [`Refusal::status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No `Sec-WebSocket-Protocol` at all.
    #[error(
        "the client offered no Sec-WebSocket-Protocol; moq over WebSocket needs one like qmux-01.moq-lite-05"
    )]
    NothingOffered,
    /// Only bare wire formats (`qmux-01`, `webtransport`, ...): version negotiation by
    /// SETUP (moq-lite-01/02), which this WebSocket path does not support.
    #[error(
        "the client offered only subprotocols without a moq version ({offered}); \
         SETUP version negotiation (moq-lite-01/02) is not supported"
    )]
    NoVersion {
        /// What was offered.
        offered: String,
    },
    /// No offer pairs a wire format and a version we allow.
    #[error("the client offered no moq version this server allows (offered: {offered}; allowed: {allowed})")]
    NoCommonVersion {
        /// What was offered.
        offered: String,
        /// What we allow, as subprotocols.
        allowed: String,
    },
}

impl Refusal {
    /// The HTTP status to refuse the upgrade with (400, like the reference relay).
    pub fn status(&self) -> u16 {
        400
    }
}

/// The subprotocol for `wire` and `version`: `qmux-01.moq-lite-05`.
pub fn name(wire: Wire, version: Protocol) -> String {
    format!("{}.{}", wire.name(), version.alpn())
}

/// What a subprotocol names: the wire format and, unless it is bare, the version.
/// `None` for anything else (including pairings with versions we do not speak).
pub fn parse(subprotocol: &str) -> Option<(Wire, Option<Protocol>)> {
    let subprotocol = subprotocol.trim();
    for wire in Wire::PREFERRED {
        if subprotocol == wire.name() {
            return Some((wire, None));
        }
        if let Some(alpn) = subprotocol
            .strip_prefix(wire.name())
            .and_then(|rest| rest.strip_prefix('.'))
        {
            return Protocol::from_alpn(alpn.as_bytes()).map(|v| (wire, Some(v)));
        }
    }
    None
}

/// The subprotocols for `versions` (newest first as given), in preference order:
/// what a client offers and a server supports. Each version on qmux-01, then on
/// qmux-00 (the reference relay's order).
pub fn list(versions: &[Protocol]) -> Vec<String> {
    versions
        .iter()
        .flat_map(|&version| Wire::PREFERRED.map(|wire| name(wire, version)))
        .collect()
}

/// Split `Sec-WebSocket-Protocol` header values (each may hold a comma-separated list).
pub fn offered<'a>(headers: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    headers
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// Choose the subprotocol to answer from the client's `offered` list, given the
/// versions we `allow` (empty: all we speak).
///
/// Our preference decides, not the client's order: the newest allowed version the
/// client offered, on qmux-01 if it offered that, else qmux-00.
pub fn select<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    allow: &[Protocol],
) -> Result<Negotiated, Refusal> {
    let offered = self::offered(offered);
    let versions = crate::versions(allow);
    for &version in &versions {
        for wire in Wire::PREFERRED {
            let wanted = name(wire, version);
            if offered.iter().any(|p| *p == wanted) {
                return Ok(Negotiated {
                    subprotocol: wanted,
                    wire,
                    version,
                });
            }
        }
    }
    let offered_text = offered.join(", ");
    if offered.is_empty() {
        return Err(Refusal::NothingOffered);
    }
    let paired = offered.iter().any(|p| {
        p.split_once('.')
            .is_some_and(|(prefix, _)| prefix.starts_with("qmux-"))
    });
    if !paired {
        return Err(Refusal::NoVersion {
            offered: offered_text,
        });
    }
    Err(Refusal::NoCommonVersion {
        offered: offered_text,
        allowed: list(&versions).join(", "),
    })
}

#[cfg(test)]
mod tests {
    use moq_proto::Version;

    use super::*;

    /// What `@moq/net` 0.3.4 offers (`connectWebSocket` in its `connection/connect.js`).
    const MOQ_NET: &[&str] = &[
        "qmux-02.moq-lite-05",
        "qmux-01.moq-lite-05",
        "qmux-00.moq-lite-05",
        "qmux-02.moq-lite-04",
        "qmux-01.moq-lite-04",
        "qmux-00.moq-lite-04",
        "qmux-02.moq-lite-03",
        "qmux-01.moq-lite-03",
        "qmux-00.moq-lite-03",
        "qmux-02.moql",
        "qmux-01.moql",
        "qmux-00.moql",
        "qmux-01.moqt-20",
        "qmux-01.moqt-18",
        "qmux-02.moqt-17",
        "qmux-01.moqt-17",
        "qmux-00.moqt-17",
        "qmux-02",
        "qmux-01",
        "qmux-00",
        "webtransport",
    ];

    #[test]
    fn moq_net_gets_its_newest_version_on_qmux_01() {
        let got = select(MOQ_NET.iter().copied(), &[]).unwrap();
        assert_eq!(
            got,
            Negotiated {
                subprotocol: "qmux-01.moq-lite-05".into(),
                wire: Wire::Qmux01,
                version: Protocol::Lite(Version::Lite05),
            }
        );
    }

    #[test]
    fn our_preference_wins_over_the_client_order() {
        // The client lists the older version first; we still pick the newest.
        let got = select(
            ["qmux-00.moq-lite-03, qmux-00.moq-lite-06", "qmux-00.moq-lite-04"],
            &[],
        )
        .unwrap();
        assert_eq!(got.subprotocol, "qmux-00.moq-lite-06");
        assert_eq!(got.wire, Wire::Qmux00);
        assert_eq!(got.version, Protocol::Lite(Version::Lite06));
    }

    #[test]
    fn allowed_versions_restrict_the_choice() {
        let got = select(
            MOQ_NET.iter().copied(),
            &[Protocol::Lite(Version::Lite03), Protocol::Lite(Version::Lite04)],
        )
        .unwrap();
        assert_eq!(got.subprotocol, "qmux-01.moq-lite-04");

        let err = select(["qmux-01.moq-lite-05"], &[Protocol::Lite(Version::Lite04)]).unwrap_err();
        assert_eq!(
            err,
            Refusal::NoCommonVersion {
                offered: "qmux-01.moq-lite-05".into(),
                allowed: "qmux-01.moq-lite-04, qmux-00.moq-lite-04".into(),
            }
        );
        assert!(err.to_string().contains("allowed: qmux-01.moq-lite-04"), "{err}");
    }

    #[test]
    fn bare_wire_formats_are_refused() {
        let err = select(["qmux-01, qmux-00", "webtransport"], &[]).unwrap_err();
        assert!(matches!(err, Refusal::NoVersion { .. }), "{err:?}");
        assert!(err.to_string().contains("SETUP"), "{err}");
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn moq_transport_pairings_are_chosen_when_no_moq_lite_is_offered() {
        // @moq/net's IETF offers alone (forced onto moq-transport).
        let ietf: Vec<&str> = MOQ_NET.iter().copied().filter(|p| p.contains("moqt")).collect();
        let got = select(ietf.iter().copied(), &[]).unwrap();
        assert_eq!(got.subprotocol, "qmux-01.moqt-20");
        assert_eq!(got.version, Protocol::Ietf(moq_proto::ietf::Version::Draft20));
        // Restricted to draft-17: the only pairing with it.
        let draft17 = Protocol::Ietf(moq_proto::ietf::Version::Draft17);
        let got = select(MOQ_NET.iter().copied(), &[draft17]).unwrap();
        assert_eq!(
            (got.subprotocol.as_str(), got.version),
            ("qmux-01.moqt-17", draft17)
        );
    }

    #[test]
    fn nothing_offered_is_refused() {
        assert_eq!(select([], &[]), Err(Refusal::NothingOffered));
        assert_eq!(select(["", " , "], &[]), Err(Refusal::NothingOffered));
    }

    #[test]
    fn pairings_we_do_not_speak_are_no_common_version() {
        let err = select(["qmux-02.moq-lite-05", "qmux-01.moqt-13"], &[]).unwrap_err();
        assert!(matches!(err, Refusal::NoCommonVersion { .. }), "{err:?}");
    }

    #[test]
    fn the_list_pairs_every_version_with_both_wire_formats() {
        assert_eq!(
            list(&[Protocol::Lite(Version::Lite05), Protocol::Lite(Version::Lite04)]),
            vec![
                "qmux-01.moq-lite-05",
                "qmux-00.moq-lite-05",
                "qmux-01.moq-lite-04",
                "qmux-00.moq-lite-04"
            ]
        );
    }

    #[test]
    fn parse_names() {
        assert_eq!(
            parse("qmux-01.moq-lite-05"),
            Some((Wire::Qmux01, Some(Protocol::Lite(Version::Lite05))))
        );
        assert_eq!(
            parse(" qmux-00.moq-lite-03 "),
            Some((Wire::Qmux00, Some(Protocol::Lite(Version::Lite03))))
        );
        assert_eq!(parse("qmux-01"), Some((Wire::Qmux01, None)));
        assert_eq!(
            parse("qmux-01.moqt-18"),
            Some((
                Wire::Qmux01,
                Some(Protocol::Ietf(moq_proto::ietf::Version::Draft18))
            ))
        );
        assert_eq!(parse("qmux-01.moqt-13"), None);
        assert_eq!(parse("qmux-02.moq-lite-05"), None);
        assert_eq!(parse("webtransport"), None);
        assert_eq!(parse("qmux-01moq-lite-05"), None);
    }
}
