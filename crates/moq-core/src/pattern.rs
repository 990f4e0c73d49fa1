//! Path patterns, as the moq-dev ecosystem writes grants since its 0.15 relay:
//! `foo` is exactly the broadcast `foo`, `foo/**` is `foo` and everything beneath it,
//! `**` is everything, `*` is any one segment and `pre*suf` one segment with a known
//! start and end.
//!
//! A pattern is `/`-separated segments, each a literal, `*`, `pre*suf` (one `*`, at
//! least one side non-empty) or `**` (zero or more whole segments, at most once per
//! pattern). Leading, trailing or doubled `/` are refused, as is more than
//! [`MAX_SEGMENTS`](Pattern::MAX_SEGMENTS) segments. The empty pattern matches only the
//! root itself. `*/**` is written `**/*` (they match the same paths), so two patterns
//! that match the same paths have the same text.

use std::fmt;

use moq_proto::Path;

/// One segment of a [`Pattern`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Exactly this segment (never empty, no `/` or `*`).
    Literal(String),
    /// `*`: any one segment.
    Any,
    /// `prefix*suffix`: one segment starting with `prefix` and ending with `suffix`,
    /// the two not overlapping.
    Partial {
        /// What the segment starts with (may be empty).
        prefix: String,
        /// What the segment ends with (may be empty, not both).
        suffix: String,
    },
    /// `**`: zero or more whole segments.
    Rest,
}

impl Segment {
    fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::EmptySegment);
        }
        if text.contains('/') {
            return Err(PatternError::BadSegment(text.to_string()));
        }
        match text {
            "*" => return Ok(Self::Any),
            "**" => return Ok(Self::Rest),
            _ => {}
        }
        match text.split_once('*') {
            None => Ok(Self::Literal(text.to_string())),
            Some((prefix, suffix)) if !suffix.contains('*') => Ok(Self::Partial {
                prefix: prefix.to_string(),
                suffix: suffix.to_string(),
            }),
            Some(_) => Err(PatternError::BadSegment(text.to_string())),
        }
    }

    /// Whether this (non-`**`) segment matches one path segment.
    fn matches(&self, segment: &str) -> bool {
        match self {
            Self::Literal(literal) => literal == segment,
            Self::Any => true,
            Self::Partial { prefix, suffix } => {
                segment.len() >= prefix.len().saturating_add(suffix.len())
                    && segment.starts_with(prefix.as_str())
                    && segment.ends_with(suffix.as_str())
            }
            Self::Rest => false,
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Literal(literal) => f.write_str(literal),
            Self::Any => f.write_str("*"),
            Self::Partial { prefix, suffix } => write!(f, "{prefix}*{suffix}"),
            Self::Rest => f.write_str("**"),
        }
    }
}

/// Why a string is not a [`Pattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// A leading, trailing or doubled `/`.
    #[error("empty segment (a leading, trailing or doubled '/')")]
    EmptySegment,
    /// A segment with more than one `*`, or `**` mixed with other characters.
    #[error("bad segment '{0}': use a name, '*', 'prefix*suffix' or '**'")]
    BadSegment(String),
    /// `**` twice.
    #[error("'**' may appear only once in a pattern")]
    TwoRests,
    /// Too many segments.
    #[error("more than {} segments", Pattern::MAX_SEGMENTS)]
    TooLong,
}

/// A set of broadcast paths (see the [module](self) documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pattern {
    segments: Vec<Segment>,
    text: String,
}

impl Pattern {
    /// The most segments a pattern may have (the path limit on the wire).
    pub const MAX_SEGMENTS: usize = moq_proto::limits::MAX_PATH_SEGMENTS;

    /// A pattern from its segments: at most one `**`, at most
    /// [`MAX_SEGMENTS`](Self::MAX_SEGMENTS); `*` segments next to `**` move after it.
    pub fn new(segments: Vec<Segment>) -> Result<Self, PatternError> {
        if segments.len() > Self::MAX_SEGMENTS {
            return Err(PatternError::TooLong);
        }
        let mut segments = segments;
        let Some(rest) = segments.iter().position(|s| *s == Segment::Rest) else {
            return Ok(Self::from_canonical(segments));
        };
        if segments
            .iter()
            .skip(rest.saturating_add(1))
            .any(|s| *s == Segment::Rest)
        {
            return Err(PatternError::TwoRests);
        }
        // `*/**` and `**/*` match the same paths (one or more segments): keep one text.
        let mut at = rest;
        while at > 0 && segments.get(at.saturating_sub(1)) == Some(&Segment::Any) {
            segments.swap(at, at.saturating_sub(1));
            at = at.saturating_sub(1);
        }
        Ok(Self::from_canonical(segments))
    }

    fn from_canonical(segments: Vec<Segment>) -> Self {
        let text = segments
            .iter()
            .map(Segment::to_string)
            .collect::<Vec<_>>()
            .join("/");
        Self { segments, text }
    }

    /// `**`: every path.
    pub fn all() -> Self {
        Self::from_canonical(vec![Segment::Rest])
    }

    /// `path/**`: `path` and everything beneath it (`**` for the root).
    pub fn subtree(path: &Path) -> Self {
        let mut segments: Vec<Segment> = path.segments().map(|s| Segment::Literal(s.to_string())).collect();
        if segments.len() < Self::MAX_SEGMENTS {
            segments.push(Segment::Rest);
        }
        Self::from_canonical(segments)
    }

    /// Exactly `path`. A segment of the path containing `*` cannot be named by a
    /// pattern: `None` then.
    pub fn literal(path: &Path) -> Option<Self> {
        if path.as_str().contains('*') {
            return None;
        }
        Some(Self::from_canonical(
            path.segments().map(|s| Segment::Literal(s.to_string())).collect(),
        ))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The prefix this pattern covers if it is `literal/.../**` (or `**`): it then
    /// matches exactly that path and everything beneath it.
    pub fn as_prefix(&self) -> Option<Path> {
        let (last, head) = self.segments.split_last()?;
        if *last != Segment::Rest {
            return None;
        }
        let mut literals = Vec::with_capacity(head.len());
        for segment in head {
            match segment {
                Segment::Literal(literal) => literals.push(literal.as_str()),
                _ => return None,
            }
        }
        Path::new(&literals.join("/")).ok()
    }

    /// The literal segments before the first wildcard: every path this pattern names
    /// starts with it (the whole pattern when it has no wildcard).
    pub fn literal_head(&self) -> Path {
        let literals: Vec<&str> = self
            .segments
            .iter()
            .map_while(|s| match s {
                Segment::Literal(literal) => Some(literal.as_str()),
                _ => None,
            })
            .collect();
        Path::new(&literals.join("/")).unwrap_or_default()
    }

    /// This pattern placed below `path` (`path/pattern`), or `None` when that has too
    /// many segments (it would name no valid path) or `path` has a `*` in it.
    pub fn below(&self, path: &Path) -> Option<Pattern> {
        if path.as_str().contains('*') {
            return None;
        }
        let mut segments: Vec<Segment> = path.segments().map(|s| Segment::Literal(s.to_string())).collect();
        segments.extend_from_slice(&self.segments);
        Self::new(segments).ok()
    }

    /// `(head, tail)` around the `**`, or `None` without one.
    fn split_rest(&self) -> Option<(&[Segment], &[Segment])> {
        let at = self.segments.iter().position(|s| *s == Segment::Rest)?;
        let head = self.segments.get(..at)?;
        let tail = self.segments.get(at.saturating_add(1)..)?;
        Some((head, tail))
    }

    /// Whether `path` is one of the paths this pattern describes.
    pub fn matches(&self, path: &Path) -> bool {
        let parts: Vec<&str> = path.segments().collect();
        match self.split_rest() {
            None => {
                parts.len() == self.segments.len()
                    && self.segments.iter().zip(&parts).all(|(s, p)| s.matches(p))
            }
            Some((head, tail)) => {
                let Some(rest) = parts.len().checked_sub(head.len().saturating_add(tail.len())) else {
                    return false;
                };
                let after = head.len().saturating_add(rest);
                head.iter().zip(&parts).all(|(s, p)| s.matches(p))
                    && tail
                        .iter()
                        .zip(parts.iter().skip(after))
                        .all(|(s, p)| s.matches(p))
            }
        }
    }

    /// Whether some path at or beneath `prefix` is one of this pattern's paths (so a
    /// peer asking for announcements under `prefix` may see something).
    pub fn reaches_under(&self, prefix: &Path) -> bool {
        let parts: Vec<&str> = prefix.segments().collect();
        match self.split_rest() {
            // Without `**` every match has exactly as many segments as the pattern.
            None => {
                parts.len() <= self.segments.len()
                    && self.segments.iter().zip(&parts).all(|(s, p)| s.matches(p))
            }
            // The head must agree with the prefix as far as both go; the `**` takes the
            // rest of the prefix and the tail is met below it.
            Some((head, _)) => head.iter().zip(&parts).all(|(s, p)| s.matches(p)),
        }
    }

    /// The patterns that, relative to `root`, describe exactly the paths beneath (or
    /// at) `root` this pattern describes. Empty when there are none. It is a set:
    /// `**/a` at `x/a` is both the root itself and `**/a` below it.
    pub fn rebase(&self, root: &Path) -> Vec<Pattern> {
        let parts: Vec<&str> = root.segments().collect();
        let mut index = 0usize;
        for (at, segment) in self.segments.iter().enumerate() {
            let Some(part) = parts.get(index) else {
                // The root is used up: what is left of the pattern is relative to it.
                return vec![Self::from_canonical(
                    self.segments.get(at..).unwrap_or_default().to_vec(),
                )];
            };
            if *segment == Segment::Rest {
                let tail = self.segments.get(at.saturating_add(1)..).unwrap_or_default();
                return rebase_rest(parts.get(index..).unwrap_or_default(), tail);
            }
            if !segment.matches(part) {
                return Vec::new();
            }
            index = index.saturating_add(1);
        }
        match index == parts.len() {
            true => vec![Self::from_canonical(Vec::new())],
            // The pattern ends above the root: nothing beneath the root matches.
            false => Vec::new(),
        }
    }
}

/// `**/tail` rebased at the rest of a root, `rest` (not empty): `**` may take all of
/// `rest` and go on below it (`**/tail` again), or end inside `rest` with the first
/// segments of `tail` matching the last segments of `rest` (what is left of `tail`).
fn rebase_rest(rest: &[&str], tail: &[Segment]) -> Vec<Pattern> {
    let mut out = Vec::new();
    let mut again = vec![Segment::Rest];
    again.extend_from_slice(tail);
    out.push(Pattern::from_canonical(again));
    if tail.is_empty() {
        return out;
    }
    for taken in 1..=tail.len().min(rest.len()) {
        let (Some(inside), Some(below)) = (tail.get(..taken), tail.get(taken..)) else {
            continue;
        };
        let Some(end) = rest.get(rest.len().saturating_sub(taken)..) else {
            continue;
        };
        if inside.iter().zip(end).all(|(s, p)| s.matches(p)) {
            let pattern = Pattern::from_canonical(below.to_vec());
            if !out.contains(&pattern) {
                out.push(pattern);
            }
        }
    }
    out
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Ok(Self::from_canonical(Vec::new()));
        }
        let segments = text
            .split('/')
            .map(Segment::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(segments)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Pattern {
        s.parse().unwrap()
    }

    fn p(s: &str) -> Path {
        Path::new(s).unwrap()
    }

    #[test]
    fn grammar() {
        for good in [
            "", "a", "a/b", "**", "a/**", "**/a", "a/*/c", "a*", "*b", "a*b", "a/**/b",
        ] {
            assert_eq!(pat(good).as_str(), good, "{good}");
        }
        assert_eq!(pat("*/**").as_str(), "**/*");
        assert_eq!(pat("a/*/*/**/b").as_str(), "a/**/*/*/b");
        for bad in ["/a", "a/", "a//b", "a**", "**b", "a*b*c", "**/**", "***"] {
            assert!(bad.parse::<Pattern>().is_err(), "{bad}");
        }
        let long = vec!["a"; 33].join("/");
        assert_eq!(long.parse::<Pattern>(), Err(PatternError::TooLong));
    }

    #[test]
    fn matching_is_exact() {
        assert!(pat("foo").matches(&p("foo")));
        assert!(!pat("foo").matches(&p("foo/bar")), "a literal is one broadcast");
        assert!(pat("foo/**").matches(&p("foo")), "a subtree includes its root");
        assert!(pat("foo/**").matches(&p("foo/a/b")));
        assert!(!pat("foo/**").matches(&p("foobar")));
        assert!(pat("**").matches(&p("")) && pat("**").matches(&p("x/y")));
        assert!(pat("*/chat").matches(&p("alice/chat")) && !pat("*/chat").matches(&p("chat")));
        assert!(pat("**/chat").matches(&p("chat")) && pat("**/chat").matches(&p("a/b/chat")));
        assert!(pat("cam*").matches(&p("cam1")) && !pat("cam*").matches(&p("mic")));
        assert!(
            pat("a*a").matches(&p("aa")) && !pat("a*a").matches(&p("a")),
            "no overlap"
        );
        assert!(pat("").matches(&p("")) && !pat("").matches(&p("a")));
        assert!(pat("a/**/z").matches(&p("a/z")) && pat("a/**/z").matches(&p("a/b/c/z")));
        assert!(!pat("a/**/z").matches(&p("a")));
    }

    #[test]
    fn reaching_under_a_prefix() {
        assert!(pat("foo").reaches_under(&p("")));
        assert!(pat("foo").reaches_under(&p("foo")));
        assert!(!pat("foo").reaches_under(&p("foo/bar")));
        assert!(pat("*/chat").reaches_under(&p("alice")));
        assert!(!pat("*/chat").reaches_under(&p("alice/video")));
        assert!(pat("a/**").reaches_under(&p("a/b/c")));
        assert!(!pat("a/**").reaches_under(&p("b")));
        assert!(pat("**/x").reaches_under(&p("anything/at/all")));
    }

    #[test]
    fn prefixes() {
        assert_eq!(pat("**").as_prefix(), Some(p("")));
        assert_eq!(pat("a/b/**").as_prefix(), Some(p("a/b")));
        assert_eq!(pat("a/b").as_prefix(), None);
        assert_eq!(pat("*/**").as_prefix(), None);
        assert_eq!(Pattern::subtree(&p("a/b")).as_str(), "a/b/**");
        assert_eq!(Pattern::subtree(&p("")).as_str(), "**");
        assert_eq!(Pattern::literal(&p("a/b")).unwrap().as_str(), "a/b");
        assert_eq!(Pattern::literal(&p("a*")), None);
    }

    #[test]
    fn heads_and_placing_below() {
        assert_eq!(pat("a/b/*/c").literal_head(), p("a/b"));
        assert_eq!(pat("a/b").literal_head(), p("a/b"));
        assert_eq!(pat("**").literal_head(), p(""));
        assert_eq!(pat("*/chat").below(&p("room")).unwrap().as_str(), "room/*/chat");
        assert_eq!(pat("**").below(&p("")).unwrap().as_str(), "**");
        let deep = Path::new(&vec!["x"; 32].join("/")).unwrap();
        assert_eq!(pat("a").below(&deep), None);
    }

    #[test]
    fn rebasing() {
        let at = |pattern: &str, root: &str| -> Vec<String> {
            pat(pattern)
                .rebase(&p(root))
                .iter()
                .map(|p| p.as_str().to_string())
                .collect()
        };
        assert_eq!(at("anon/**", ""), ["anon/**"]);
        assert_eq!(at("anon/**", "anon"), ["**"]);
        assert_eq!(at("anon/**", "anon/room"), ["**"]);
        assert!(at("anon/**", "other").is_empty());
        assert_eq!(at("anon/clock", "anon"), ["clock"]);
        assert_eq!(at("anon/clock", "anon/clock"), [""]);
        assert!(at("anon/clock", "anon/clock/x").is_empty());
        assert_eq!(at("*/chat", "alice"), ["chat"]);
        assert_eq!(at("**/a", "x/a"), ["**/a", ""]);
        assert_eq!(at("**/a/b", "a"), ["**/a/b", "b"]);
        assert_eq!(at("**", "deep/root"), ["**"]);
        // Every rebased pattern names only paths the original names, and all of them.
        for (pattern, root, probes) in [
            ("**/a/b", "x/a", &["b", "a/b", "q/a/b", "", "c"][..]),
            ("a/**/z", "a/b", &["z", "c/z", "", "y"][..]),
        ] {
            let rebased = pat(pattern).rebase(&p(root));
            for probe in probes {
                let full = p(root).join(probe).unwrap();
                let relative = p(probe);
                assert_eq!(
                    pat(pattern).matches(&full),
                    rebased.iter().any(|r| r.matches(&relative)),
                    "{pattern} at {root}: {probe}"
                );
            }
        }
    }
}
