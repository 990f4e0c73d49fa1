//! Anonymous (public) access, and the one function that turns a session's
//! root, its verified claims and the public prefixes into [`Permissions`].

use moq_core::session::Permissions;
use moq_proto::Path;

use crate::{
    Claims, Error, Result,
    claims::{minimise, rebase},
};

/// Prefixes anyone may use without a token, as absolute paths (relative to
/// the relay root, not to a session).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Public {
    /// Prefixes anyone may subscribe to and discover.
    pub subscribe: Vec<Path>,
    /// Prefixes anyone may publish under.
    pub publish: Vec<Path>,
}

impl Public {
    /// Parse configured prefixes. Each is a path (`""` is everything,
    /// `anon` is `anon` and below) or the same with a trailing `/**` as
    /// newer configs write it; any other `*` is refused rather than read
    /// literally.
    pub fn from_prefixes<S: AsRef<str>>(subscribe: &[S], publish: &[S]) -> Result<Self> {
        let parse = |list: &[S]| {
            list.iter()
                .map(|p| Self::parse_prefix(p.as_ref()))
                .collect::<Result<Vec<_>>>()
        };
        Ok(Self {
            subscribe: parse(subscribe)?,
            publish: parse(publish)?,
        })
    }

    /// Parse one configured prefix (see [`from_prefixes`](Self::from_prefixes)).
    pub fn parse_prefix(raw: &str) -> Result<Path> {
        let trimmed = raw.strip_suffix("**").unwrap_or(raw).trim_end_matches('/');
        if trimmed.contains('*') {
            return Err(Error::BadPath(format!(
                "public prefix '{raw}': only a trailing '/**' wildcard is supported"
            )));
        }
        Path::new(trimmed).map_err(|e| Error::BadPath(format!("public prefix '{raw}': {e}")))
    }

    /// Whether no public access is configured.
    pub fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.publish.is_empty()
    }

    /// What an anonymous session rooted at `root` may do, relative to `root`.
    pub fn permissions(&self, root: &Path) -> Permissions {
        let relative = |prefixes: &[Path]| rebase(prefixes, &Path::empty(), root).unwrap_or_default();
        Permissions {
            publish: relative(&self.publish),
            subscribe: relative(&self.subscribe),
            ..Permissions::default()
        }
    }

    /// Whether anyone may subscribe to this absolute path.
    pub fn can_subscribe(&self, path: &Path) -> bool {
        self.subscribe.iter().any(|p| path.has_prefix(p))
    }

    /// Whether anyone may publish at this absolute path.
    pub fn can_publish(&self, path: &Path) -> bool {
        self.publish.iter().any(|p| path.has_prefix(p))
    }
}

/// The permissions of a session rooted at `root` (the dialled URL path),
/// relative to `root`: what its verified `claims` allow there, plus what
/// `public` allows anyone.
///
/// Refuses with
/// - [`Error::TokenRequired`] when there is no token and the public
///   prefixes allow nothing at `root`;
/// - [`Error::WrongRoot`] when a token is presented for a root unrelated to
///   `root`, even if public access would cover it: the client meant the
///   token to count, and silently downgrading it would hide the mistake;
/// - [`Error::NoAccess`] when a token is presented but neither it nor the
///   public prefixes allow anything at `root`.
pub fn authorize(claims: Option<&Claims>, root: &Path, public: &Public) -> Result<Permissions> {
    let anonymous = public.permissions(root);
    let Some(claims) = claims else {
        if anonymous.publishes_nothing() && anonymous.subscribes_nothing() {
            return Err(Error::TokenRequired(root.to_string()));
        }
        return Ok(anonymous);
    };
    let granted = claims.authorize(root)?;
    let merged = Permissions {
        publish: minimise([granted.publish, anonymous.publish].concat()),
        subscribe: minimise([granted.subscribe, anonymous.subscribe].concat()),
        publish_patterns: granted.publish_patterns,
        subscribe_patterns: granted.subscribe_patterns,
    };
    if merged.publishes_nothing() && merged.subscribes_nothing() {
        return Err(Error::NoAccess(root.to_string()));
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::new(s).unwrap()
    }

    #[test]
    fn prefixes() {
        assert_eq!(Public::parse_prefix("anon/**").unwrap(), p("anon"));
        assert_eq!(Public::parse_prefix("**").unwrap(), p(""));
        assert_eq!(Public::parse_prefix("/anon/").unwrap(), p("anon"));
        assert!(Public::parse_prefix("a/*/b").is_err());
        assert!(Public::parse_prefix("anon*").is_err());
    }

    #[test]
    fn relative_to_root() {
        let public = Public::from_prefixes(&["anon"], &["anon/live"]).unwrap();
        let at = |root: &str| public.permissions(&p(root));
        assert_eq!(at("").subscribe, [p("anon")]);
        assert_eq!(at("anon").subscribe, [p("")]);
        assert_eq!(at("anon/x").subscribe, [p("")]);
        assert_eq!(at("anon").publish, [p("live")]);
        assert!(at("anonymous").subscribe.is_empty());
        assert!(public.can_subscribe(&p("anon/a")) && !public.can_subscribe(&p("anonx")));
        assert!(public.can_publish(&p("anon/live/a")) && !public.can_publish(&p("anon/a")));
    }
}
