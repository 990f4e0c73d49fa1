//! Hop lists: the relay ids an announcement has passed through.

use bytes::{Buf, BufMut};

use crate::{
    DecodeError, EncodeError, Version,
    coding::{get_varint, put_varint},
    limits::MAX_HOPS,
};

/// The ids of the relays an announcement has crossed, oldest first.
///
/// Id 0 means "unknown" (lite-03 sends only a hop count, which decodes as that
/// many zeros). A non-zero id appears at most once: a list that revisits a
/// relay describes a loop and is rejected. At most [`MAX_HOPS`] entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Hops(Vec<u64>);

/// A hop list broke one of its invariants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HopsError {
    /// More than [`MAX_HOPS`] entries.
    #[error("hop list is longer than {MAX_HOPS}")]
    TooMany,
    /// A non-zero id appears twice.
    #[error("hop {0} appears twice")]
    Duplicate(u64),
    /// An id does not fit in a varint.
    #[error("hop id {0} is out of range")]
    Range(u64),
}

impl Hops {
    /// An empty list.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Build a list, checking every invariant.
    pub fn from_ids(ids: Vec<u64>) -> Result<Self, HopsError> {
        let mut hops = Hops(Vec::with_capacity(ids.len().min(MAX_HOPS)));
        for id in ids {
            hops.push(id)?;
        }
        Ok(hops)
    }

    /// Append a hop.
    pub fn push(&mut self, id: u64) -> Result<(), HopsError> {
        if self.0.len() >= MAX_HOPS {
            return Err(HopsError::TooMany);
        }
        if id > crate::coding::MAX_VARINT {
            return Err(HopsError::Range(id));
        }
        if id != 0 && self.0.contains(&id) {
            return Err(HopsError::Duplicate(id));
        }
        self.0.push(id);
        Ok(())
    }

    /// Whether a (non-zero) id is already in the list.
    pub fn contains(&self, id: u64) -> bool {
        id != 0 && self.0.contains(&id)
    }

    /// The ids, oldest first.
    pub fn ids(&self) -> &[u64] {
        &self.0
    }

    /// Number of hops.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decode in `version`'s form: a count, then (lite-04+) the ids; nothing
    /// at all on lite-01/02.
    pub(crate) fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        const WHAT: &str = "hop list";
        if !version.has_hops() {
            return Ok(Self::new());
        }
        let count = get_varint(buf)?;
        if count > MAX_HOPS as u64 {
            return Err(DecodeError::TooMany {
                what: WHAT,
                count,
                max: MAX_HOPS as u64,
            });
        }
        let mut hops = Hops(Vec::with_capacity(count as usize));
        for _ in 0..count {
            let id = if version.has_hop_ids() {
                get_varint(buf)?
            } else {
                0
            };
            hops.push(id)
                .map_err(|_| DecodeError::Duplicate { what: WHAT, id })?;
        }
        Ok(hops)
    }

    /// Encode in `version`'s form. lite-03 carries the count alone; lite-01/02
    /// carry no hops, so the list is left out (it only informs route choice and
    /// loop checks, which those peers do not make).
    pub(crate) fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        if !version.has_hops() {
            return Ok(());
        }
        put_varint(buf, self.0.len() as u64, "hop list")?;
        if version.has_hop_ids() {
            for id in &self.0 {
                put_varint(buf, *id, "hop id")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariants() {
        assert_eq!(Hops::from_ids(vec![1, 2, 1]), Err(HopsError::Duplicate(1)));
        assert!(Hops::from_ids(vec![0, 0, 3]).is_ok());
        assert_eq!(Hops::from_ids((1..=33).collect()), Err(HopsError::TooMany));
        assert!(Hops::from_ids((1..=32).collect()).is_ok());
    }

    #[test]
    fn decode_limits() {
        // A huge count is refused before any allocation.
        let wire = [0xbf, 0xff, 0xff, 0xff];
        let err = Hops::decode(&mut &wire[..], Version::Lite04).unwrap_err();
        assert!(matches!(err, DecodeError::TooMany { max: 32, .. }));
        let wire = [2, 5, 5];
        let err = Hops::decode(&mut &wire[..], Version::Lite04).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Duplicate {
                what: "hop list",
                id: 5
            }
        );
        // lite-03: count only.
        let hops = Hops::decode(&mut &[3][..], Version::Lite03).unwrap();
        assert_eq!(hops.ids(), [0, 0, 0]);
        // lite-01/02: no hop list on the wire; the byte is not consumed.
        let mut wire = &[3][..];
        assert!(Hops::decode(&mut wire, Version::Lite02).unwrap().is_empty());
        assert_eq!(wire, [3]);
        let mut out = Vec::new();
        Hops::from_ids(vec![1, 2])
            .unwrap()
            .encode(&mut out, Version::Lite01)
            .unwrap();
        assert!(out.is_empty());
    }
}
