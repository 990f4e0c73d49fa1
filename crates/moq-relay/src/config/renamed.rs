//! Keys and flags the ecosystem's relay has since removed, each with what replaced it.
//!
//! An operator's file written for an older `moq-relay` may still hold them. This relay
//! reads none of them either, so loading such a file stops with the message the
//! ecosystem's relay prints ("these settings were renamed and are no longer applied"),
//! one line per setting naming its replacement, rather than starting on settings it
//! would silently drop. Old spellings this relay still reads (`[server]`, `[client]`,
//! `[server.quic]`, `disable_verify`, `listen` for `bind`) load as before.

use toml::de::{DeTable, DeValue};

/// Removed config-file keys by dotted path (`[listen]` / `[connect]` spellings are
/// matched as `server` / `client`): how the ecosystem names the key, its replacement,
/// and a note when the replacement does not mean the same thing.
pub const RENAMED_KEYS: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "auth.domains",
        "[auth] domains",
        "an auth server that reads `server_name`",
        None,
    ),
    (
        "auth.mtls_tier",
        "[auth] mtls_tier",
        "[auth] url to `moq auth serve --tier`",
        None,
    ),
    (
        "auth.tls",
        "[auth.tls]",
        "[connect.tls], which an https:// [auth] url presents",
        Some("this relay speaks only http:// on loopback to its auth server for now"),
    ),
    ("client.connect", "[connect] connect", "url", None),
    ("client.failover_delay", "[connect] failover_delay", "race", None),
    (
        "client.reconnect",
        "[connect] reconnect",
        "once",
        Some("inverted: reconnect = false is once = true"),
    ),
];

/// Removed flags and their env vars, with the replacement.
pub const RENAMED_FLAGS: &[(&str, &str, &str)] = &[
    (
        "auth-domain",
        "MOQ_AUTH_DOMAIN",
        "an auth server that reads `server_name`",
    ),
    (
        "auth-mtls-tier",
        "MOQ_AUTH_MTLS_TIER",
        "--auth-url to `moq auth serve --tier`",
    ),
    (
        "auth-public-api",
        "MOQ_AUTH_PUBLIC_API",
        "--auth-url to a server answering the contract",
    ),
    (
        "auth-tls-root",
        "MOQ_AUTH_TLS_ROOT",
        "--connect-tls-*, which an https:// --auth-url presents",
    ),
    (
        "auth-tls-cert",
        "MOQ_AUTH_TLS_CERT",
        "--connect-tls-*, which an https:// --auth-url presents",
    ),
    (
        "auth-tls-key",
        "MOQ_AUTH_TLS_KEY",
        "--connect-tls-*, which an https:// --auth-url presents",
    ),
    ("client-connect", "MOQ_CLIENT_CONNECT", "--connect / MOQ_CONNECT"),
    (
        "client-failover-delay",
        "MOQ_CLIENT_FAILOVER_DELAY",
        "--connect-race / MOQ_CONNECT_RACE",
    ),
];

/// The ecosystem's heading for the list.
pub const HEADING: &str = "these settings were renamed and are no longer applied; update them and try again:";

/// One line of the message: `old -> new`, with the note in parentheses.
pub fn entry(old: &str, new: &str, note: Option<&str>) -> String {
    match note {
        Some(note) => format!("{old} -> {new} ({note})"),
        None => format!("{old} -> {new}"),
    }
}

/// The removed keys in `table` (the parsed file), each as (message line, byte offset of
/// the key), in file order.
pub(super) fn find(table: &DeTable<'_>) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    find_at(table, "", &mut found);
    found.sort_by_key(|(_, offset)| *offset);
    found
}

fn find_at(table: &DeTable<'_>, prefix: &str, found: &mut Vec<(String, usize)>) {
    for (key, value) in table.iter() {
        let path = match prefix {
            "" => key.get_ref().to_string(),
            _ => format!("{prefix}.{}", key.get_ref()),
        };
        let canonical = super::inert::canonical(&path);
        if let Some((_, old, new, note)) = RENAMED_KEYS.iter().find(|(renamed, ..)| *renamed == canonical) {
            found.push((entry(old, new, *note), key.span().start));
            continue;
        }
        if let DeValue::Table(inner) = value.get_ref() {
            find_at(inner, &path, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        let table = DeTable::parse(text).unwrap().into_inner();
        find(&table).into_iter().map(|(line, _)| line).collect()
    }

    #[test]
    fn removed_keys_are_found_in_either_spelling_of_their_table() {
        let found = lines(
            "[auth]\nkey = \"a.jwk\"\ndomains = [\"x\"]\n[auth.tls]\nroot = [\"ca.pem\"]\n\
             [connect]\nreconnect = false\n[client]\nfailover_delay = \"1s\"\n",
        );
        assert_eq!(
            found,
            [
                "[auth] domains -> an auth server that reads `server_name`",
                "[auth.tls] -> [connect.tls], which an https:// [auth] url presents (this relay speaks \
                 only http:// on loopback to its auth server for now)",
                "[connect] reconnect -> once (inverted: reconnect = false is once = true)",
                "[connect] failover_delay -> race",
            ]
        );
    }

    #[test]
    fn current_keys_and_look_alikes_are_not_renamed() {
        assert!(lines("[auth]\nurl = \"http://127.0.0.1:4440\"\npublic_subscribe = [\"a/**\"]\n").is_empty());
        assert!(lines("[cluster]\nconnect = [\"https://peer/\"]\n").is_empty());
        assert!(lines("[connect]\nurl = \"https://x/\"\nrace = \"1s\"\n").is_empty());
        assert!(lines("[listen.tls]\nroot = [\"ca.pem\"]\n").is_empty());
    }
}
