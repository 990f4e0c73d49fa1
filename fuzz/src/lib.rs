//! Shared round-trip check for the `moq-proto` fuzz targets.
//!
//! Every target in `fuzz_targets/` is one call to [`round_trip`] with the
//! message type it exercises.

use std::fmt::Debug;

use bytes::Buf;
use moq_proto::{Decode, Encode, Version};

/// Decode `data[1..]` as a `T` in the version picked by `data[0] % 4`.
///
/// If it decodes:
/// - it consumed no more bytes than it was given;
/// - decoding the same bytes split into two chunks (at `data[0] >> 2`, the
///   bits the version does not use) gives the same value and consumption, so
///   the chunk-straddling paths of `Buf` decoding are covered too;
/// - re-encoding it in the same version succeeds (unless `may_not_encode`
///   says this value is legitimately receive-only), and decoding those bytes
///   gives back an equal value and consumes exactly the re-encoded bytes.
pub fn round_trip<T>(data: &[u8], may_not_encode: fn(&T) -> bool)
where
    T: Decode + Encode + PartialEq + Debug,
{
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let version = Version::ALL[usize::from(selector) % Version::ALL.len()];

    // First decode, from one contiguous slice.
    let mut cursor = input;
    let result = T::decode(&mut cursor, version);
    assert!(
        cursor.len() <= input.len(),
        "cursor grew: {} > {}",
        cursor.len(),
        input.len()
    );
    let consumed = input.len() - cursor.len();

    // Same bytes through a two-chunk `Buf`.
    let split = usize::from(selector >> 2).min(input.len());
    let (head, tail) = input.split_at(split);
    let mut chained = head.chain(tail);
    let chained_result = T::decode(&mut chained, version);
    let chained_consumed = input.len() - chained.remaining();

    let msg = match result {
        Ok(msg) => msg,
        Err(err) => {
            assert!(
                chained_result.is_err(),
                "{version}: contiguous decode failed ({err}) but split at {split} decoded {:?}",
                chained_result
            );
            return;
        }
    };
    assert!(consumed <= input.len());
    match chained_result {
        Ok(chained_msg) => {
            assert_eq!(
                msg, chained_msg,
                "{version}: split at {split} decoded a different value"
            );
            assert_eq!(
                consumed, chained_consumed,
                "{version}: split at {split} consumed a different number of bytes"
            );
        }
        Err(err) => panic!("{version}: contiguous decode gave {msg:?} but split at {split} failed: {err}"),
    }

    // Re-encode and decode again.
    let encoded = match msg.to_vec(version) {
        Ok(encoded) => encoded,
        Err(err) => {
            assert!(
                may_not_encode(&msg),
                "{version}: decoded {msg:?} from {consumed} bytes but cannot re-encode it: {err}"
            );
            return;
        }
    };
    let mut cursor = &encoded[..];
    let again = T::decode(&mut cursor, version).unwrap_or_else(|err| {
        panic!("{version}: re-encoded {msg:?} as {encoded:02x?}, which does not decode: {err}")
    });
    assert_eq!(
        msg, again,
        "{version}: round trip changed the value (re-encoded as {encoded:02x?})"
    );
    assert!(
        cursor.is_empty(),
        "{version}: re-decoding {msg:?} left {} of {} bytes unread",
        cursor.len(),
        encoded.len()
    );
}
