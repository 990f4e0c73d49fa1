//! Keys the ecosystem's relay understands and this one does not act on. Operators' files
//! keep loading, with one warning per key saying it has no effect, instead of each key
//! being modelled (type, flag, env var, validation) only to be ignored.
//!
//! `MOQ_*` environment variables naming an inert key get the same warning (see
//! [`crate::check`]).

use toml::de::{DeTable, DeValue};

/// Inert keys by dotted path (a table covers every key in it), and why.
pub const INERT: &[(&str, &str)] = &[
    ("server.backend", "this relay always runs on quinn"),
    ("server.quic.gso", "GSO is used whenever the kernel supports it"),
    (
        "server.quic.mtu_discovery",
        "path MTU discovery is not configurable",
    ),
    ("server.quic.qlog", "qlog output is not supported"),
    (
        "server.quic.preferred_v4",
        "QUIC preferred addresses are not supported",
    ),
    (
        "server.quic.preferred_v6",
        "QUIC preferred addresses are not supported",
    ),
    (
        "server.quic.quic_lb_id",
        "QUIC-LB connection ids are not supported",
    ),
    (
        "server.quic.quic_lb_nonce",
        "QUIC-LB connection ids are not supported",
    ),
    ("server.tcp", "plaintext qmux over TCP is not served"),
    ("server.unix", "plaintext qmux over a Unix socket is not served"),
    ("client.url", "the relay dials only its cluster peers"),
    ("client.once", "cluster links always reconnect"),
    ("client.backend", "this relay always runs on quinn"),
    ("client.timeout", "cluster dials use the QUIC handshake timeout"),
    ("client.race", "cluster dials race every resolved address at once"),
    (
        "client.resolution_delay",
        "cluster dials race every resolved address at once",
    ),
    ("client.backoff", "cluster links back off from 250ms to 10s"),
    ("client.tls.host_name", "the server name is the peer URL's host"),
    ("client.quic.gso", "GSO is used whenever the kernel supports it"),
    (
        "client.quic.mtu_discovery",
        "path MTU discovery is not configurable",
    ),
    ("client.quic.qlog", "qlog output is not supported"),
    ("quic.gso", "GSO is used whenever the kernel supports it"),
    ("quic.mtu_discovery", "path MTU discovery is not configurable"),
    ("quic.qlog", "qlog output is not supported"),
    (
        "cluster.connect_api",
        "peers come from 'cluster.connect' and the directory of 'cluster.root'",
    ),
    ("cluster.tier", "stats tiers are not supported"),
    ("cluster.lan", "LAN discovery is not supported"),
    (
        "stats",
        "stats broadcasts are not published; use the internal listener's /metrics",
    ),
    ("iroh", "iroh is not supported"),
    ("runtime", "the runtime uses every core it is given"),
];

/// The inert entry covering `key` (a dotted path, `[listen]` and `[connect]` spellings
/// included), if any.
pub(super) fn lookup(key: &str) -> Option<(&'static str, &'static str)> {
    let key = canonical(key);
    INERT
        .iter()
        .copied()
        .find(|(inert, _)| key == *inert || key.strip_prefix(inert).is_some_and(|rest| rest.starts_with('.')))
}

/// `key` with its table written the way this relay's tables are named: `listen.x` is
/// `server.x` and `connect.x` is `client.x` (the 0.15+ spellings of the same tables).
pub(super) fn canonical(key: &str) -> std::borrow::Cow<'_, str> {
    let (first, rest) = match key.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (key, None),
    };
    let table = match first {
        "listen" => "server",
        "connect" => "client",
        _ => return std::borrow::Cow::Borrowed(key),
    };
    match rest {
        Some(rest) => std::borrow::Cow::Owned(format!("{table}.{rest}")),
        None => std::borrow::Cow::Borrowed(table),
    }
}

/// The warning for an inert key found at `place` (`file:line` or an env var name).
pub fn warning(place: &str, key: &str, why: &str) -> String {
    format!("{place}: '{key}' has no effect on this relay ({why}); remove it")
}

/// Remove every inert key from `table` (the parsed file, keys with their spans), and
/// return each as (dotted key, byte offset).
pub(super) fn strip(table: &mut DeTable<'_>) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    strip_at(table, "", &mut found);
    found
}

fn strip_at(table: &mut DeTable<'_>, prefix: &str, found: &mut Vec<(String, usize)>) {
    let keys: Vec<String> = table.keys().map(|k| k.get_ref().to_string()).collect();
    for key in keys {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if lookup(&path).is_some() {
            let span = table
                .get_key_value(key.as_str())
                .map_or(0, |(k, _)| k.span().start);
            table.remove(key.as_str());
            found.push((path, span));
            continue;
        }
        if let Some(value) = table.get_mut(key.as_str())
            && let DeValue::Table(inner) = value.get_mut()
        {
            strip_at(inner, &path, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inert_keys_are_found_at_any_depth_and_removed() {
        let text = "[server]\nbackend = \"quinn\"\nbind = \"[::]:443\"\n[server.quic]\ngso = true\n\
                    [stats]\nenabled = true\n[iroh.deep]\nx = 1\n";
        let mut table = DeTable::parse(text).unwrap().into_inner();
        let found = strip(&mut table);
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["iroh", "server.backend", "server.quic.gso", "stats"]);
        let server = table.get("server").unwrap().get_ref();
        let DeValue::Table(server) = server else { panic!() };
        assert!(server.get("bind").is_some() && server.get("backend").is_none());
        assert_eq!(
            found.iter().find(|(k, _)| k == "server.backend").unwrap().1,
            text.find("backend").unwrap()
        );
    }

    #[test]
    fn listen_and_connect_spellings_are_the_same_tables() {
        assert_eq!(lookup("listen.backend"), lookup("server.backend"));
        assert!(lookup("listen.quic.qlog").is_some());
        assert!(lookup("connect.backoff").is_some());
        assert!(
            lookup("connect.websocket.delay").is_none(),
            "[client.websocket] acts"
        );
        assert!(lookup("connect.tls.host_name").is_some());
        assert!(lookup("listen.bind").is_none());
        assert!(lookup("listener.backend").is_none());
        assert_eq!(canonical("connect"), "client");
        assert_eq!(canonical("cluster.connect"), "cluster.connect");

        let text = "[listen]\nbackend = \"quinn\"\nbind = \"[::]:443\"\n[connect]\nrace = \"1s\"\n";
        let mut table = DeTable::parse(text).unwrap().into_inner();
        let keys: Vec<String> = strip(&mut table).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["connect.race", "listen.backend"]);
    }

    #[test]
    fn lookup_matches_whole_segments() {
        assert!(lookup("stats.enabled").is_some());
        assert!(lookup("statsd").is_none());
        assert!(lookup("server.quic.idle_timeout").is_none());
    }
}
