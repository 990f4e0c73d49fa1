//! Tokens never reach the terminal: every error and log line the `moq` client prints goes
//! through [`text`], which hides `jwt=` values, anything shaped like a JWT, and the tokens
//! this process was given (registered with [`secret`]).
//!
//! The relay has its own URL redactor (`moq_relay::redact::url`) for whole URLs; the
//! client needs free text (error chains from the TLS, QUIC and HTTP layers quote URLs
//! inside sentences), so it has this small one of its own rather than a dependency on
//! the relay.

use std::{
    io::{self, Write},
    sync::{Mutex, PoisonError},
};

/// What a hidden secret is replaced with.
const HIDDEN: &str = "<redacted>";

/// The tokens this process holds, hidden wherever they appear (even when they are not
/// JWT-shaped).
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Hide `token` in everything printed from now on.
pub(crate) fn secret(token: &str) {
    // A very short "token" would hide ordinary words; JWTs are far longer.
    if token.len() < 8 {
        return;
    }
    let mut secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    if !secrets.iter().any(|s| s == token) {
        secrets.push(token.to_string());
    }
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'%' | b'+' | b'/' | b'=')
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_')
}

/// `text` with secrets hidden: the value of every `jwt=` parameter, every JWT-shaped word
/// (`eyJ…` header, dot, payload, dot, signature) and every registered secret.
pub(crate) fn text(text: &str) -> String {
    let mut out = text.to_string();
    for secret in SECRETS.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        out = out.replace(secret.as_str(), HIDDEN);
    }
    let out = hide_after(&out, "jwt=", is_token_char);
    hide_jwts(&out)
}

/// Hide the run of `allowed` bytes after each `marker` (case-insensitive).
fn hide_after(text: &str, marker: &str, allowed: fn(u8) -> bool) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = lower.get(at..).and_then(|rest| rest.find(marker)) {
        let start = at + found + marker.len();
        let mut end = start;
        while bytes.get(end).copied().is_some_and(allowed) {
            end += 1;
        }
        out.push_str(text.get(at..start).unwrap_or_default());
        if end > start && text.get(start..end) != Some(HIDDEN) {
            out.push_str(HIDDEN);
        } else {
            out.push_str(text.get(start..end).unwrap_or_default());
        }
        at = end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

/// Hide every `eyJ<b64url>.<b64url>.<b64url>` word: a JWT wherever it is quoted.
fn hide_jwts(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_b64url(bytes[i - 1]);
        if starts_word && bytes[i..].starts_with(b"eyJ") {
            // Three base64url runs joined by two dots.
            let mut end = i;
            let mut dots = 0;
            while let Some(&c) = bytes.get(end) {
                if c == b'.' {
                    dots += 1;
                    if dots > 2 {
                        break;
                    }
                } else if !is_b64url(c) {
                    break;
                }
                end += 1;
            }
            if dots == 2 {
                out.push_str(&text[at..i]);
                out.push_str(HIDDEN);
                at = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&text[at..]);
    out
}

/// A log writer (for `tracing_subscriber`) that hides secrets before writing to stderr.
/// The formatter hands over one whole event per write, so a token is never split.
pub(crate) struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let shown = text(&String::from_utf8_lossy(buf));
        io::stderr().write_all(shown.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJFZERTQSJ9.eyJyb290IjoiYW5vbiJ9.c2lnbmF0dXJlLWJ5dGVz";

    #[test]
    fn jwt_parameters_and_jwt_shaped_words_are_hidden() {
        let message = format!(
            "could not connect to https://relay:443/room?jwt={JWT}&x=1: server at \
             https://relay:443/room?JWT={JWT} rejected the session (token {JWT})"
        );
        let shown = text(&message);
        assert!(!shown.contains("eyJ"), "{shown}");
        assert!(!shown.contains("c2lnbmF0dXJl"), "{shown}");
        assert_eq!(
            shown,
            "could not connect to https://relay:443/room?jwt=<redacted>&x=1: server at \
             https://relay:443/room?JWT=<redacted> rejected the session (token <redacted>)"
        );
        // Nothing to hide: unchanged, including an empty jwt= and ordinary dotted words.
        for plain in [
            "https://relay/anon?jwt=",
            "moq-lite-06 eyJust.one dot",
            "version 1.2.3",
        ] {
            assert_eq!(text(plain), plain);
        }
    }

    #[test]
    fn registered_secrets_are_hidden_whatever_their_shape() {
        secret("opaque-token-value-1234");
        secret("short");
        let shown = text("token opaque-token-value-1234 refused; short words stay");
        assert_eq!(shown, "token <redacted> refused; short words stay");
    }

    #[test]
    fn multibyte_text_around_a_token_survives() {
        let shown = text(&format!("é → jwt={JWT} … ✓"));
        assert_eq!(shown, "é → jwt=<redacted> … ✓");
    }
}
