//! `[auth]`: who may publish and subscribe where.

use std::{fmt, path::PathBuf};

use clap::Args;
use serde::{Deserialize, Deserializer, de};
use serde_with::{DisplayFromStr, OneOrMany};

/// `[auth]`: token verification keys, anonymous prefixes, or an external auth service.
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

    /// Auth service base URL, asked about every session (key also spelled `auth_api`).
    #[arg(
        id = "auth-url",
        long = "auth-url",
        env = "MOQ_AUTH_URL",
        value_name = "URL",
        alias = "auth-api"
    )]
    #[serde(alias = "auth_api")]
    pub url: Option<String>,

    /// Anonymous access, normalised from the file's `public` (a prefix, a list, or a
    /// `{ subscribe, publish }` table) and the `--auth-public*` flags.
    #[arg(skip)]
    #[serde(skip)]
    pub public: Option<Public>,

    /// `public` as written in the file; folded into `public` at load.
    #[arg(skip)]
    #[serde(rename = "public")]
    public_file: Option<PublicValue>,

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
                if let Some(api) = table.api {
                    if self.url.as_ref().is_some_and(|url| *url != api) {
                        return Err(
                            "'auth.public.api' and 'auth.url' are both set: they are the same \
                                    setting, keep only 'auth.url'"
                                .to_string(),
                        );
                    }
                    warnings.push(format!(
                        "'auth.public.api' is deprecated: write url = \"{api}\" under [auth] instead"
                    ));
                    self.url = Some(api);
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
