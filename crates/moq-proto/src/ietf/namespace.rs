//! Track namespaces: a tuple of fields, written as a count then each field
//! length-prefixed (every draft). At most 32 fields.
//!
//! The drafts allow arbitrary bytes in a field; the ecosystem's peers (and the
//! moq-lite model we bridge to) only use UTF-8, so a field that is not UTF-8
//! is refused like the reference implementation refuses it.

use bytes::{Buf, BufMut};

use super::{
    Version,
    coding::{get_count, get_string, put_string, put_varint},
};
use crate::{
    DecodeError, EncodeError, Path,
    limits::{MAX_NAME_BYTES, MAX_NAMESPACE_FIELDS},
};

/// A track namespace (or a namespace prefix or suffix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace {
    /// The fields, outermost first. At most [`MAX_NAMESPACE_FIELDS`], each
    /// at most [`MAX_NAME_BYTES`] bytes.
    pub fields: Vec<String>,
}

impl Namespace {
    /// The empty tuple (matches every namespace as a prefix).
    pub const fn empty() -> Self {
        Self { fields: Vec::new() }
    }

    /// A namespace from its fields.
    pub fn new<S: Into<String>>(fields: impl IntoIterator<Item = S>) -> Self {
        Self {
            fields: fields.into_iter().map(Into::into).collect(),
        }
    }

    /// The namespace whose fields are the segments of a moq-lite path.
    pub fn from_path(path: &Path) -> Self {
        match path.as_str() {
            "" => Self::empty(),
            s => Self::new(s.split('/')),
        }
    }

    /// The moq-lite path with one segment per field, or `None` when a field
    /// is empty or contains `/` (it would not come back as the same tuple).
    pub fn to_path(&self) -> Option<Path> {
        if self.fields.iter().any(|f| f.is_empty() || f.contains('/')) {
            return None;
        }
        Path::new(&self.fields.join("/")).ok()
    }

    /// Whether `self` is a field-wise prefix of `other`.
    pub fn is_prefix_of(&self, other: &Namespace) -> bool {
        other.fields.starts_with(&self.fields)
    }

    /// `other` with the prefix `self` removed, if `self` is a prefix of it.
    pub fn suffix_of(&self, other: &Namespace) -> Option<Namespace> {
        other
            .fields
            .strip_prefix(self.fields.as_slice())
            .map(|rest| Namespace {
                fields: rest.to_vec(),
            })
    }

    pub(crate) fn decode_from<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let count = get_count(buf, version, "namespace fields", MAX_NAMESPACE_FIELDS)?;
        let mut fields = Vec::with_capacity(count);
        for _ in 0..count {
            fields.push(get_string(buf, version, "namespace field", MAX_NAME_BYTES)?);
        }
        Ok(Self { fields })
    }

    pub(crate) fn encode_to<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        if self.fields.len() > MAX_NAMESPACE_FIELDS {
            return Err(EncodeError::TooMany {
                what: "namespace fields",
                count: self.fields.len() as u64,
                max: MAX_NAMESPACE_FIELDS as u64,
            });
        }
        put_varint(buf, self.fields.len() as u64, version, "namespace fields")?;
        for field in &self.fields {
            put_string(buf, field, version, "namespace field", MAX_NAME_BYTES)?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_and_limits() {
        let ns = Namespace::new(["room", "alice"]);
        let mut out = Vec::new();
        ns.encode_to(&mut out, Version::Draft16).unwrap();
        assert_eq!(out, b"\x02\x04room\x05alice");
        assert_eq!(
            Namespace::decode_from(&mut &out[..], Version::Draft16).unwrap(),
            ns
        );

        let too_many = Namespace::new((0..33).map(|i| i.to_string()));
        assert!(too_many.encode_to(&mut Vec::new(), Version::Draft14).is_err());
        assert_eq!(
            Namespace::decode_from(&mut &[33][..], Version::Draft14),
            Err(DecodeError::TooMany {
                what: "namespace fields",
                count: 33,
                max: 32
            })
        );
        assert_eq!(
            Namespace::decode_from(&mut &[1, 1, 0xff][..], Version::Draft14),
            Err(DecodeError::InvalidUtf8 {
                what: "namespace field"
            })
        );
    }

    #[test]
    fn paths_and_prefixes() {
        let path = Path::new("room/alice").unwrap();
        let ns = Namespace::from_path(&path);
        assert_eq!(ns.fields, ["room", "alice"]);
        assert_eq!(ns.to_path(), Some(path));
        assert_eq!(Namespace::from_path(&Path::empty()), Namespace::empty());
        assert_eq!(Namespace::new(["a/b"]).to_path(), None);
        assert_eq!(Namespace::new([""]).to_path(), None);

        let prefix = Namespace::new(["room"]);
        assert!(prefix.is_prefix_of(&ns));
        assert!(!Namespace::new(["roo"]).is_prefix_of(&ns));
        assert_eq!(prefix.suffix_of(&ns), Some(Namespace::new(["alice"])));
        assert_eq!(ns.suffix_of(&prefix), None);
    }
}
