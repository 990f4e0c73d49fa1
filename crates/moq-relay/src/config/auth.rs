//! `[auth]`: who may publish and subscribe where.

use std::{fmt, path::PathBuf, time::Duration};

use clap::Args;
use serde::{Deserialize, Deserializer, de};
use serde_with::{DisplayFromStr, OneOrMany};

use super::value::{HumanDuration, parse_duration};

/// `[auth]`: token verification keys, anonymous prefixes, or an external auth service.
#[serde_with::serde_as]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// JWK file that verifies tokens (tokens then need no `kid`).
    #[arg(id = "auth-key", long = "auth-key", env = "MOQ_AUTH_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Directory of `{kid}.jwk` files, picked by the token's `kid`.
    #[arg(
        id = "auth-key-dir",
        long = "auth-key-dir",
        env = "MOQ_AUTH_KEY_DIR",
        value_name = "DIR"
    )]
    pub key_dir: Option<String>,

    /// Auth server asked about every session (one JSON POST per connect, revalidate and
    /// end, the contract `moq auth serve` answers): `http://` on a loopback address.
    #[arg(id = "auth-url", long = "auth-url", env = "MOQ_AUTH_URL", value_name = "URL")]
    pub url: Option<String>,

    /// How long the auth server has to answer before the session is refused (default 10s).
    #[arg(
        id = "auth-timeout",
        long = "auth-timeout",
        env = "MOQ_AUTH_TIMEOUT",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    #[serde_as(as = "Option<HumanDuration>")]
    pub timeout: Option<Duration>,

    /// How long an auth server's answer to a `connect` is reused for the same facts (path,
    /// query, address, certificate...), default 2s; "0s" asks every time.
    #[arg(
        id = "auth-cache",
        long = "auth-cache",
        env = "MOQ_AUTH_CACHE",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    #[serde_as(as = "Option<HumanDuration>")]
    pub cache: Option<Duration>,

    /// Requests to the auth server in flight at once (default 64); a session arriving
    /// when all are taken is refused at once rather than queued behind a slow server.
    #[arg(
        id = "auth-concurrency",
        long = "auth-concurrency",
        env = "MOQ_AUTH_CONCURRENCY",
        value_name = "N"
    )]
    pub concurrency: Option<u32>,

    /// The 0.14 GET webhook (`auth_api`, `--auth-api`), replaced by `url`: refused with
    /// that said, never sent the new contract silently.
    #[arg(
        id = "auth-api",
        long = "auth-api",
        env = "MOQ_AUTH_API",
        value_name = "URL",
        hide = true
    )]
    pub auth_api: Option<String>,

    /// Anonymous access, normalised from the file's `public` (a prefix, a list, or a
    /// `{ subscribe, publish }` table) and the `--auth-public*` flags.
    #[arg(skip)]
    #[serde(skip)]
    pub public: Option<Public>,

    /// `public` as written in the file; folded into `public` at load.
    #[arg(skip)]
    #[serde(rename = "public")]
    public_file: Option<PublicValue>,

    /// `public_subscribe` as written in the file (the 0.15+ spelling).
    #[arg(skip)]
    #[serde(rename = "public_subscribe")]
    #[serde_as(as = "Option<OneOrMany<DisplayFromStr>>")]
    public_subscribe_file: Option<Vec<String>>,

    /// `public_publish` as written in the file (the 0.15+ spelling).
    #[arg(skip)]
    #[serde(rename = "public_publish")]
    #[serde_as(as = "Option<OneOrMany<DisplayFromStr>>")]
    public_publish_file: Option<Vec<String>>,

    /// Path prefix(es) anyone may subscribe to and publish under ("" = everything).
    #[arg(
        id = "auth-public",
        long = "auth-public",
        env = "MOQ_AUTH_PUBLIC",
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    #[serde(skip)]
    public_flag: Option<Vec<String>>,

    /// Path prefix(es) anyone may subscribe to ("" = everything).
    #[arg(
        id = "auth-public-subscribe",
        long = "auth-public-subscribe",
        env = "MOQ_AUTH_PUBLIC_SUBSCRIBE",
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    #[serde(skip)]
    public_subscribe_flag: Option<Vec<String>>,

    /// Path prefix(es) anyone may publish under ("" = everything).
    #[arg(
        id = "auth-public-publish",
        long = "auth-public-publish",
        env = "MOQ_AUTH_PUBLIC_PUBLISH",
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    #[serde(skip)]
    public_publish_flag: Option<Vec<String>>,
}

impl Auth {
    /// Anonymous publish and subscribe everywhere (the development default).
    pub fn anonymous() -> Self {
        Self {
            public: Some(Public::everything()),
            ..Self::default()
        }
    }

    /// Fold the file's spellings into the normalised fields (before flags apply).
    pub(super) fn migrate(&mut self, warnings: &mut Vec<String>) -> Result<(), String> {
        let subscribe = self.public_subscribe_file.take();
        let publish = self.public_publish_file.take();
        if (subscribe.is_some() || publish.is_some())
            && matches!(self.public_file, Some(PublicValue::Table(_)))
        {
            return Err(
                "'auth.public' is a table and 'auth.public_subscribe'/'auth.public_publish' are set: \
                 they say the same thing, keep one spelling"
                    .to_string(),
            );
        }
        let _ = warnings;
        self.migrate_public()?;
        // The 0.15+ keys add to `public` (a pattern both ways), as theirs do.
        if let Some(subscribe) = subscribe {
            self.public.get_or_insert_default().subscribe.extend(subscribe);
        }
        if let Some(publish) = publish {
            self.public.get_or_insert_default().publish.extend(publish);
        }
        Ok(())
    }

    fn migrate_public(&mut self) -> Result<(), String> {
        let Some(value) = self.public_file.take() else {
            return Ok(());
        };
        self.public = Some(match value {
            PublicValue::One(prefix) => Public {
                subscribe: vec![prefix.clone()],
                publish: vec![prefix],
            },
            PublicValue::List(list) => Public {
                subscribe: list.clone(),
                publish: list,
            },
            PublicValue::Table(table) => {
                if table.api.is_some() {
                    return Err(
                        "'auth.public.api' (the 0.14 GET auth webhook) was replaced by auth.url, an auth server \
                         answering the POST contract (e.g. `moq auth serve`): remove it and set url"
                            .to_string(),
                    );
                }
                Public {
                    subscribe: table.subscribe,
                    publish: table.publish,
                }
            }
        });
        Ok(())
    }

    /// Apply `--auth-public`, `--auth-public-subscribe` and `--auth-public-publish` (and their
    /// env vars) over whatever the file said.
    pub(super) fn apply_flags(&mut self) {
        if let Some(both) = self.public_flag.take() {
            self.public = Some(Public {
                subscribe: both.clone(),
                publish: both,
            });
        }
        if let Some(subscribe) = self.public_subscribe_flag.take() {
            self.public.get_or_insert_default().subscribe = subscribe;
        }
        if let Some(publish) = self.public_publish_flag.take() {
            self.public.get_or_insert_default().publish = publish;
        }
    }

    /// Whether any way to authenticate is configured (ignoring mTLS, see `server.tls.root`).
    pub fn is_configured(&self) -> bool {
        self.key.is_some()
            || self.key_dir.is_some()
            || self.url.is_some()
            || self.public.as_ref().is_some_and(|p| !p.is_empty())
    }
}

/// Anonymous access: path prefixes anyone may use without a token.
///
/// Prefixes are kept as written: `""` means every path; 0.17-style glob patterns such as
/// `"anon/**"` are passed through for the auth layer to interpret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Public {
    /// Prefixes anyone may subscribe to.
    pub subscribe: Vec<String>,
    /// Prefixes anyone may publish under.
    pub publish: Vec<String>,
}

impl Public {
    /// Everything, both ways (`public = ""`).
    pub fn everything() -> Self {
        Self {
            subscribe: vec![String::new()],
            publish: vec![String::new()],
        }
    }

    /// Grants nothing.
    pub fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.publish.is_empty()
    }
}

impl fmt::Display for Public {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subscribe {:?} publish {:?}", self.subscribe, self.publish)
    }
}

/// `[auth] public` as written: a prefix, a list of prefixes, or a table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicValue {
    One(String),
    List(Vec<String>),
    Table(PublicTable),
}

/// `[auth.public]` in table form.
#[serde_with::serde_as]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PublicTable {
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    subscribe: Vec<String>,
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    publish: Vec<String>,
    /// Deprecated spelling of `[auth] url`.
    api: Option<String>,
}

impl<'de> Deserialize<'de> for PublicValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = PublicValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a path prefix, a list of prefixes, or a table { subscribe = [...], publish = [...] }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PublicValue, E> {
                Ok(PublicValue::One(v.to_string()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<PublicValue, A::Error> {
                let mut list = Vec::new();
                while let Some(prefix) = seq.next_element::<String>()? {
                    list.push(prefix);
                }
                Ok(PublicValue::List(list))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<PublicValue, A::Error> {
                PublicTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(PublicValue::Table)
            }
        }
        d.deserialize_any(Visitor)
    }
}
