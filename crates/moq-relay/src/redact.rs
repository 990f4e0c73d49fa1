//! Secrets never reach logs, metrics or messages: helpers that hide them.

/// A URL fit for logs and messages: the value of any `jwt` query parameter hidden, user
/// info (`user:password@`) and fragment dropped; other query parameters (`cost`) kept.
/// Something that is not a URL loses everything after `?` or `#`.
pub fn url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return raw.split(['?', '#']).next().unwrap_or_default().to_string();
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "jwt" {
                    "…".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_lose_tokens_and_passwords() {
        assert_eq!(
            url("https://peer:4443/?jwt=secret&cost=2"),
            "https://peer:4443/?jwt=%E2%80%A6&cost=2"
        );
        assert_eq!(
            url("https://user:pw@auth.example.com/check"),
            "https://auth.example.com/check"
        );
        assert!(!url("peer:443/?jwt=secret").contains("secret"));
        assert_eq!(url("https://peer/#jwt=x"), "https://peer/");
    }
}
