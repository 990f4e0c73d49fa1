//! Broadcast paths: `/`-separated segments, normalised, bounded.

use std::fmt;

use bytes::{Buf, BufMut};

use crate::{
    DecodeError, EncodeError,
    coding::{get_string, put_string},
    limits::{MAX_PATH_BYTES, MAX_PATH_SEGMENTS},
};

/// A normalised broadcast path: no leading or trailing `/`, no empty segments,
/// at most [`MAX_PATH_SEGMENTS`] segments and [`MAX_PATH_BYTES`] bytes.
///
/// Segments are literal: `.` and `..` have no special meaning on the wire, so
/// they are ordinary names here. Prefix tests are segment-aware: `foo` is a
/// prefix of `foo/bar` but not of `foobar`.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(String);

/// A string could not be made into a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// More than [`MAX_PATH_SEGMENTS`] segments.
    #[error("path has {0} segments; at most {MAX_PATH_SEGMENTS} are allowed")]
    TooManySegments(usize),
    /// Longer than [`MAX_PATH_BYTES`] once normalised.
    #[error("path is {0} bytes long; at most {MAX_PATH_BYTES} are allowed")]
    TooLong(usize),
}

impl Path {
    /// The empty path (the root).
    pub const fn empty() -> Self {
        Self(String::new())
    }

    /// Normalise `s`: trim leading and trailing slashes and collapse repeated
    /// slashes. Fails if the result breaks a limit.
    pub fn new(s: &str) -> Result<Self, PathError> {
        let mut out = String::with_capacity(s.len());
        let mut segments = 0usize;
        for segment in s.split('/').filter(|seg| !seg.is_empty()) {
            if segments > 0 {
                out.push('/');
            }
            out.push_str(segment);
            segments = segments.saturating_add(1);
        }
        if segments > MAX_PATH_SEGMENTS {
            return Err(PathError::TooManySegments(segments));
        }
        if out.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong(out.len()));
        }
        Ok(Self(out))
    }

    /// The normalised path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the root path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The path's segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|seg| !seg.is_empty())
    }

    /// Whether `prefix` is this path or one of its ancestors (segment-aware).
    pub fn has_prefix(&self, prefix: &Path) -> bool {
        self.strip_prefix(prefix).is_some()
    }

    /// The remainder after `prefix`, if `prefix` is this path or an ancestor.
    pub fn strip_prefix(&self, prefix: &Path) -> Option<&str> {
        if prefix.is_empty() {
            return Some(&self.0);
        }
        let rest = self.0.strip_prefix(prefix.as_str())?;
        if rest.is_empty() {
            Some(rest)
        } else {
            rest.strip_prefix('/')
        }
    }

    /// `self/suffix`, normalised and checked against the limits.
    pub fn join(&self, suffix: &str) -> Result<Path, PathError> {
        Path::new(&format!("{}/{}", self.0, suffix))
    }

    pub(crate) fn decode<B: Buf>(buf: &mut B, what: &'static str) -> Result<Self, DecodeError> {
        // A non-normalised path is accepted and normalised, as peers do, but it
        // cannot be longer than the limit on the wire either.
        let raw = get_string(buf, what, MAX_PATH_BYTES)?;
        Path::new(&raw).map_err(|err| match err {
            PathError::TooManySegments(n) => DecodeError::TooMany {
                what,
                count: n as u64,
                max: MAX_PATH_SEGMENTS as u64,
            },
            PathError::TooLong(n) => DecodeError::TooLarge {
                what,
                size: n as u64,
                max: MAX_PATH_BYTES as u64,
            },
        })
    }

    pub(crate) fn encode<B: BufMut>(&self, buf: &mut B, what: &'static str) -> Result<(), EncodeError> {
        put_string(buf, &self.0, what, MAX_PATH_BYTES)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl TryFrom<&str> for Path {
    type Error = PathError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Path::new(s)
    }
}

impl std::str::FromStr for Path {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::new(s).unwrap()
    }

    #[test]
    fn normalises() {
        assert_eq!(p("/a//b/c/").as_str(), "a/b/c");
        assert_eq!(p("///").as_str(), "");
        assert_eq!(p("a").segments().collect::<Vec<_>>(), ["a"]);
        assert_eq!(p("").segments().count(), 0);
    }

    #[test]
    fn prefixes_are_segment_aware() {
        assert!(p("foo/bar").has_prefix(&p("foo")));
        assert!(p("foo").has_prefix(&p("foo")));
        assert!(p("foo").has_prefix(&p("")));
        assert!(!p("foobar").has_prefix(&p("foo")));
        assert!(!p("foo").has_prefix(&p("foo/bar")));
        assert_eq!(p("foo/bar/baz").strip_prefix(&p("foo")), Some("bar/baz"));
        assert_eq!(p("foo").strip_prefix(&p("foo")), Some(""));
    }

    #[test]
    fn limits() {
        let ok = vec!["s"; MAX_PATH_SEGMENTS].join("/");
        assert!(Path::new(&ok).is_ok());
        let too_many = vec!["s"; MAX_PATH_SEGMENTS + 1].join("/");
        assert_eq!(Path::new(&too_many), Err(PathError::TooManySegments(33)));
        let long = "x".repeat(MAX_PATH_BYTES + 1);
        assert_eq!(Path::new(&long), Err(PathError::TooLong(MAX_PATH_BYTES + 1)));
        assert_eq!(p("a").join("/b//c").unwrap().as_str(), "a/b/c");
    }

    #[test]
    fn decode_limits() {
        let too_many = vec!["s"; MAX_PATH_SEGMENTS + 1].join("/");
        let mut wire = Vec::new();
        put_string(&mut wire, &too_many, "t", usize::MAX).unwrap();
        let err = Path::decode(&mut &wire[..], "path").unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooMany {
                    count: 33,
                    max: 32,
                    ..
                }
            ),
            "{err}"
        );
    }
}
