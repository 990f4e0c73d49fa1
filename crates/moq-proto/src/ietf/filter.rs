//! The subscription filter (SUBSCRIPTION_FILTER / LOCATION_FILTER): which
//! objects a SUBSCRIBE, PUBLISH_OK, REQUEST_UPDATE or (draft-20+) FETCH asks
//! for. Four wire forms:
//!
//! - draft-14: inline fields in SUBSCRIBE and PUBLISH_OK: `Filter Type`
//!   (1 NextGroupStart, 2 LargestObject, 3 AbsoluteStart, 4 AbsoluteRange),
//!   then `[Start Location] [End Group]`.
//! - draft-15 … -19: the same tagged form inside a length-prefixed parameter
//!   0x21. The End Group is absolute up to draft-16 and a delta from the
//!   start group from draft-17 (draft-17 §"Subscription Filter").
//! - draft-20, -21: a length-prefixed list of 0–4 varints whose count selects
//!   the meaning: none = everything, `[n]` = n groups back from the next
//!   group, `[0, 0]` = next object, `[g, o]` = absolute start, `[g, o, d]` =
//!   through group g+d, `[g, o, d, e]` = through object e of group g+d.
//! - draft-22: a Location Filter Type (0 none, 1 relative, 2 absolute start,
//!   3 absolute group end, 4 absolute range, 5 next object) followed by just
//!   the fields it names, with no Length.
//!
//! Note: the moq-net 0.3.18 reference writes the tagged End Group as a delta
//! in every draft; draft-14 … -16 define it as absolute. It never sends an
//! AbsoluteRange subscription itself, so we follow the draft text there.

use bytes::{Buf, BufMut};

use super::{
    Version,
    coding::{Location, get_bytes, get_varint, put_bytes, put_varint},
};
use crate::{DecodeError, EncodeError};

/// Which objects a subscription or filtered fetch delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Every object of the track (draft-20+; earlier drafts say this with
    /// `Absolute { start: {0, 0}, end: None }`).
    Unfiltered,
    /// Start after the largest object the publisher has (tag 2, LargestObject
    /// in draft-14 … -19; "Next Object" later).
    NextObject,
    /// Start `n` groups back from the next group, open ended. `Relative(0)`
    /// is the next group (tag 1, NextGroupStart); `n > 0` needs draft-20+.
    Relative(u64),
    /// An absolute range.
    Absolute {
        /// The first location delivered.
        start: Location,
        /// The inclusive end, or `None` for open ended.
        end: Option<FilterEnd>,
    },
}

/// The inclusive end of an absolute [`Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterEnd {
    /// The last group delivered.
    pub group: u64,
    /// The last object of that group, or `None` for the whole group (an end
    /// object needs draft-20+).
    pub object: Option<u64>,
}

const NEXT_GROUP_START: u64 = 0x1;
const LARGEST_OBJECT: u64 = 0x2;
const ABSOLUTE_START: u64 = 0x3;
const ABSOLUTE_RANGE: u64 = 0x4;

// draft-22 Location Filter Types.
const TYPE_NONE: u64 = 0x0;
const TYPE_RELATIVE: u64 = 0x1;
const TYPE_ABSOLUTE_START: u64 = 0x2;
const TYPE_ABSOLUTE_GROUP_END: u64 = 0x3;
const TYPE_ABSOLUTE_RANGE: u64 = 0x4;
const TYPE_NEXT_OBJECT: u64 = 0x5;

/// Largest length-prefixed filter value: four 9-byte varints.
const MAX_FILTER_BYTES: usize = 64;

fn backwards() -> EncodeError {
    EncodeError::Invalid {
        what: "filter",
        reason: "the range ends before it starts",
    }
}

fn end_delta(start: Location, end: FilterEnd) -> Result<u64, EncodeError> {
    end.group.checked_sub(start.group).ok_or_else(backwards)
}

fn add_delta(start: u64, delta: u64) -> Result<u64, DecodeError> {
    start.checked_add(delta).ok_or(DecodeError::InvalidValue {
        what: "filter end group delta",
        value: delta,
    })
}

impl Filter {
    /// Write the tagged form (draft-14 inline, draft-15 … -19 inside the
    /// parameter).
    pub(crate) fn encode_tagged<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        match *self {
            Self::NextObject => put_varint(buf, LARGEST_OBJECT, version, "filter type"),
            Self::Relative(0) => put_varint(buf, NEXT_GROUP_START, version, "filter type"),
            Self::Relative(_) => Err(EncodeError::NotInDraft {
                what: "a relative filter start other than the next group",
                version,
            }),
            Self::Unfiltered => Err(EncodeError::NotInDraft {
                what: "an unfiltered subscription (use an absolute start at {0, 0})",
                version,
            }),
            Self::Absolute { start, end: None } => {
                put_varint(buf, ABSOLUTE_START, version, "filter type")?;
                start.encode_to(buf, version)
            }
            Self::Absolute {
                end: Some(FilterEnd { object: Some(_), .. }),
                ..
            } => Err(EncodeError::NotInDraft {
                what: "a filter end object",
                version,
            }),
            Self::Absolute {
                start,
                end: Some(end),
            } => {
                let delta = end_delta(start, end)?;
                put_varint(buf, ABSOLUTE_RANGE, version, "filter type")?;
                start.encode_to(buf, version)?;
                let group = match version.has_filter_end_delta() {
                    true => delta,
                    false => end.group,
                };
                put_varint(buf, group, version, "filter end group")
            }
        }
    }

    /// Read the tagged form.
    pub(crate) fn decode_tagged<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        Ok(match get_varint(buf, version)? {
            NEXT_GROUP_START => Self::Relative(0),
            LARGEST_OBJECT => Self::NextObject,
            ABSOLUTE_START => Self::Absolute {
                start: Location::decode_from(buf, version)?,
                end: None,
            },
            ABSOLUTE_RANGE => {
                let start = Location::decode_from(buf, version)?;
                let group = get_varint(buf, version)?;
                let group = match version.has_filter_end_delta() {
                    true => add_delta(start.group, group)?,
                    false if group < start.group => {
                        return Err(DecodeError::Invalid {
                            what: "filter",
                            reason: "the End Group is before the start group",
                        });
                    }
                    false => group,
                };
                Self::Absolute {
                    start,
                    end: Some(FilterEnd { group, object: None }),
                }
            }
            value => {
                return Err(DecodeError::UnknownType {
                    what: "filter type",
                    value,
                });
            }
        })
    }

    fn encode_fields(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        match *self {
            // An open-ended absolute start at {0, 0} is defined as the whole
            // track, which is the empty list.
            Self::Unfiltered
            | Self::Absolute {
                start: Location { group: 0, object: 0 },
                end: None,
            } => Ok(()),
            Self::NextObject => {
                put_varint(buf, 0, version, "filter")?;
                put_varint(buf, 0, version, "filter")
            }
            Self::Relative(groups) => put_varint(buf, groups, version, "filter groups"),
            Self::Absolute { start, end } => {
                start.encode_to(buf, version)?;
                if let Some(end) = end {
                    put_varint(buf, end_delta(start, end)?, version, "filter end group delta")?;
                    if let Some(object) = end.object {
                        put_varint(buf, object, version, "filter end object")?;
                    }
                }
                Ok(())
            }
        }
    }

    fn decode_fields(mut body: &[u8], version: Version) -> Result<Self, DecodeError> {
        let mut fields = [0u64; 4];
        let mut count = 0;
        while !body.is_empty() {
            let slot = fields.get_mut(count).ok_or(DecodeError::TrailingBytes {
                what: "filter",
                extra: body.len(),
            })?;
            *slot = get_varint(&mut body, version).map_err(|e| e.within("filter"))?;
            count = count.saturating_add(1);
        }
        let [a, b, c, d] = fields;
        Ok(match count {
            0 => Self::Unfiltered,
            1 => Self::Relative(a),
            2 if a == 0 && b == 0 => Self::NextObject,
            2 => Self::Absolute {
                start: Location::new(a, b),
                end: None,
            },
            3 => Self::Absolute {
                start: Location::new(a, b),
                end: Some(FilterEnd {
                    group: add_delta(a, c)?,
                    object: None,
                }),
            },
            _ => Self::Absolute {
                start: Location::new(a, b),
                end: Some(FilterEnd {
                    group: add_delta(a, c)?,
                    object: Some(d),
                }),
            },
        })
    }

    fn encode_typed<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        match *self {
            Self::Unfiltered => put_varint(buf, TYPE_NONE, version, "filter type"),
            Self::NextObject => put_varint(buf, TYPE_NEXT_OBJECT, version, "filter type"),
            Self::Relative(groups) => {
                put_varint(buf, TYPE_RELATIVE, version, "filter type")?;
                put_varint(buf, groups, version, "filter groups")
            }
            Self::Absolute { start, end } => {
                let kind = match end {
                    None => TYPE_ABSOLUTE_START,
                    Some(FilterEnd { object: None, .. }) => TYPE_ABSOLUTE_GROUP_END,
                    Some(FilterEnd { object: Some(_), .. }) => TYPE_ABSOLUTE_RANGE,
                };
                let delta = end.map(|end| end_delta(start, end)).transpose()?;
                put_varint(buf, kind, version, "filter type")?;
                start.encode_to(buf, version)?;
                if let Some(delta) = delta {
                    put_varint(buf, delta, version, "filter end group delta")?;
                }
                if let Some(FilterEnd {
                    object: Some(object), ..
                }) = end
                {
                    put_varint(buf, object, version, "filter end object")?;
                }
                Ok(())
            }
        }
    }

    fn decode_typed<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let kind = get_varint(buf, version)?;
        Ok(match kind {
            TYPE_NONE => Self::Unfiltered,
            TYPE_NEXT_OBJECT => Self::NextObject,
            TYPE_RELATIVE => Self::Relative(get_varint(buf, version)?),
            TYPE_ABSOLUTE_START | TYPE_ABSOLUTE_GROUP_END | TYPE_ABSOLUTE_RANGE => {
                let start = Location::decode_from(buf, version)?;
                let end = match kind {
                    TYPE_ABSOLUTE_START => None,
                    _ => Some(FilterEnd {
                        group: add_delta(start.group, get_varint(buf, version)?)?,
                        object: match kind {
                            TYPE_ABSOLUTE_RANGE => Some(get_varint(buf, version)?),
                            _ => None,
                        },
                    }),
                };
                Self::Absolute { start, end }
            }
            value => {
                return Err(DecodeError::UnknownType {
                    what: "location filter type",
                    value,
                });
            }
        })
    }

    /// Write the value of the filter parameter (0x21), draft-15+.
    pub(crate) fn encode_param<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        if version.has_typed_filter() {
            return self.encode_typed(buf, version);
        }
        let mut value = Vec::with_capacity(16);
        match version.has_filter_fields() {
            true => self.encode_fields(&mut value, version)?,
            false => self.encode_tagged(&mut value, version)?,
        }
        put_bytes(buf, &value, version, "filter", MAX_FILTER_BYTES)
    }

    /// Read the value of the filter parameter (0x21), draft-15+.
    pub(crate) fn decode_param<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        if version.has_typed_filter() {
            return Self::decode_typed(buf, version);
        }
        let value = get_bytes(buf, version, "filter", MAX_FILTER_BYTES)?;
        if version.has_filter_fields() {
            return Self::decode_fields(&value, version);
        }
        let mut body = &value[..];
        let filter = Self::decode_tagged(&mut body, version).map_err(|e| e.within("filter"))?;
        if !body.is_empty() {
            return Err(DecodeError::TrailingBytes {
                what: "filter",
                extra: body.len(),
            });
        }
        Ok(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(filter: Filter, version: Version) -> Vec<u8> {
        let mut out = Vec::new();
        filter.encode_param(&mut out, version).unwrap();
        let (back, used) = {
            let mut cursor = &out[..];
            let back = Filter::decode_param(&mut cursor, version).unwrap();
            (back, out.len() - cursor.len())
        };
        assert_eq!(back, filter, "{version}");
        assert_eq!(used, out.len());
        out
    }

    const START: Location = Location::new(7, 3);

    #[test]
    fn tagged_forms() {
        let v = Version::Draft16;
        assert_eq!(param(Filter::NextObject, v), [1, 2]);
        assert_eq!(param(Filter::Relative(0), v), [1, 1]);
        assert_eq!(
            param(
                Filter::Absolute {
                    start: START,
                    end: None
                },
                v
            ),
            [3, 3, 7, 3]
        );
        let range = Filter::Absolute {
            start: START,
            end: Some(FilterEnd {
                group: 9,
                object: None,
            }),
        };
        // Absolute End Group through draft-16, a delta from draft-17.
        assert_eq!(param(range, Version::Draft16), [4, 4, 7, 3, 9]);
        assert_eq!(param(range, Version::Draft17), [4, 4, 7, 3, 2]);
        for v in [Version::Draft15, Version::Draft19] {
            for bad in [
                Filter::Relative(2),
                Filter::Unfiltered,
                Filter::Absolute {
                    start: START,
                    end: Some(FilterEnd {
                        group: 9,
                        object: Some(1),
                    }),
                },
            ] {
                let err = bad.encode_param(&mut Vec::new(), v).unwrap_err();
                assert!(matches!(err, EncodeError::NotInDraft { .. }), "{bad:?}");
            }
        }
    }

    #[test]
    fn field_list_forms() {
        let v = Version::Draft20;
        assert_eq!(param(Filter::Unfiltered, v), [0]);
        assert_eq!(param(Filter::NextObject, v), [2, 0, 0]);
        assert_eq!(param(Filter::Relative(1), v), [1, 1]);
        assert_eq!(
            param(
                Filter::Absolute {
                    start: START,
                    end: None
                },
                v
            ),
            [2, 7, 3]
        );
        let end = |object| Filter::Absolute {
            start: START,
            end: Some(FilterEnd { group: 9, object }),
        };
        assert_eq!(param(end(None), v), [3, 7, 3, 2]);
        assert_eq!(param(end(Some(4)), v), [4, 7, 3, 2, 4]);
        assert_eq!(
            Filter::decode_param(&mut &[5, 0, 0, 0, 0, 0][..], v),
            Err(DecodeError::TrailingBytes {
                what: "filter",
                extra: 1
            })
        );
    }

    #[test]
    fn typed_forms() {
        let v = Version::Draft22;
        assert_eq!(param(Filter::Unfiltered, v), [0]);
        assert_eq!(param(Filter::Relative(1), v), [1, 1]);
        assert_eq!(
            param(
                Filter::Absolute {
                    start: START,
                    end: None
                },
                v
            ),
            [2, 7, 3]
        );
        let end = |object| Filter::Absolute {
            start: START,
            end: Some(FilterEnd { group: 9, object }),
        };
        assert_eq!(param(end(None), v), [3, 7, 3, 2]);
        assert_eq!(param(end(Some(4)), v), [4, 7, 3, 2, 4]);
        assert_eq!(param(Filter::NextObject, v), [5]);
        assert_eq!(
            Filter::decode_param(&mut &[6][..], v),
            Err(DecodeError::UnknownType {
                what: "location filter type",
                value: 6
            })
        );
    }

    #[test]
    fn refuses_backwards_ranges() {
        let backwards = Filter::Absolute {
            start: START,
            end: Some(FilterEnd {
                group: 6,
                object: None,
            }),
        };
        for v in Version::ALL.into_iter().skip(1) {
            assert!(backwards.encode_param(&mut Vec::new(), v).is_err(), "{v}");
        }
        // An absolute End Group below the start is malformed (draft-14 … -16).
        assert!(matches!(
            Filter::decode_param(&mut &[4, 4, 7, 3, 6][..], Version::Draft16),
            Err(DecodeError::Invalid { .. })
        ));
        // A delta that overflows the group space.
        let mut wire = vec![];
        put_varint(&mut wire, 4, Version::Draft18, "t").unwrap();
        put_varint(&mut wire, 5, Version::Draft18, "t").unwrap();
        put_varint(&mut wire, 0, Version::Draft18, "t").unwrap();
        put_varint(&mut wire, u64::MAX, Version::Draft18, "t").unwrap();
        let mut framed = vec![wire.len() as u8];
        framed.extend(wire);
        assert!(matches!(
            Filter::decode_param(&mut &framed[..], Version::Draft18),
            Err(DecodeError::InvalidValue { .. })
        ));
    }
}
