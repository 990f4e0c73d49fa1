//! Shared code for the fuzz targets.
//!
//! The codec targets in `fuzz_targets/` are each one call to [`round_trip`]
//! (or an [`ietf`] function) with the message type they exercise. The targets
//! beyond the codec live in their own modules: [`auth`] (`token`, `jwk`),
//! [`gate`] (`target`) and [`session`] (`session`, with the capped allocator
//! of [`alloc`]).

pub mod alloc;
pub mod auth;
pub mod gate;
pub mod session;

/// Whether `MOQ_FUZZ_TRACE` is set: the stateful targets then print what they do
/// (for replaying a crash or checking a seed).
pub fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("MOQ_FUZZ_TRACE").is_some())
}

use std::fmt::Debug;

use bytes::Buf;
use moq_proto::{Decode, Encode, Version};

/// Decode `data[1..]` as a `T` in the version picked by `data[0] % 6`
/// (from `Version::EVERY`: lite-01 to lite-06).
///
/// If it decodes:
/// - it consumed no more bytes than it was given;
/// - decoding the same bytes split into two chunks (at `data[0] / 6`, what
///   the version choice leaves) gives the same value and consumption, so
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
    let versions = Version::EVERY;
    let version = versions[usize::from(selector) % versions.len()];

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
    let split = (usize::from(selector) / versions.len()).min(input.len());
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

/// moq-transport (IETF) targets: the draft comes from the first byte.
pub mod ietf {
    use std::fmt::Debug;

    use bytes::{Buf, Bytes};
    use moq_proto::ietf::{Decode, Encode, SubgroupObject, Version};

    /// The draft picked by a selector byte (`byte % 9`).
    pub fn version(selector: u8) -> Version {
        Version::ALL[usize::from(selector) % Version::ALL.len()]
    }

    /// Decode `data[1..]` as a `T` in the draft picked by `data[0]`, then
    /// check what the moq-lite targets check (see [`crate::round_trip`]): no
    /// over-read, the same result from a two-chunk `Buf` (split at
    /// `data[0] / 9`), and a re-encoding that decodes, whole, to an equal value.
    pub fn round_trip<T>(data: &[u8])
    where
        T: Decode + Encode + PartialEq + Debug,
    {
        let Some((&selector, input)) = data.split_first() else {
            return;
        };
        let version = version(selector);

        let mut cursor = input;
        let result = T::decode(&mut cursor, version);
        let consumed = input.len() - cursor.len();

        let split = (usize::from(selector) / Version::ALL.len()).min(input.len());
        let (head, tail) = input.split_at(split);
        let mut chained = head.chain(tail);
        let chained_result = T::decode(&mut chained, version);
        let chained_consumed = input.len() - chained.remaining();

        let msg = match (result, chained_result) {
            (Ok(msg), Ok(other)) => {
                assert_eq!(
                    msg, other,
                    "{version}: split at {split} decoded a different value"
                );
                assert_eq!(
                    consumed, chained_consumed,
                    "{version}: split at {split} consumed differently"
                );
                msg
            }
            (Err(_), Err(_)) => return,
            (a, b) => panic!("{version}: contiguous {a:?} but split at {split} {b:?}"),
        };

        // A value decoded in a draft may be one it cannot write again only
        // where the codec documents it; every such case is an encode error,
        // and what is written must read back.
        let Ok(encoded) = msg.to_vec(version) else {
            return;
        };
        let mut cursor = &encoded[..];
        let again = T::decode(&mut cursor, version).unwrap_or_else(|err| {
            panic!("{version}: re-encoded {msg:?} as {encoded:02x?}, which fails: {err}")
        });
        assert_eq!(
            msg, again,
            "{version}: round trip changed the value ({encoded:02x?})"
        );
        assert!(cursor.is_empty(), "{version}: {} bytes left over", cursor.len());
    }

    /// A subgroup object header; bit 7 of the selector says whether the
    /// stream's header announced properties.
    pub fn subgroup_object(data: &[u8]) {
        let Some((&selector, input)) = data.split_first() else {
            return;
        };
        let version = version(selector & 0x7f);
        let props = selector & 0x80 != 0;
        let Ok(obj) = SubgroupObject::decode(&mut &input[..], version, props) else {
            return;
        };
        let Ok(encoded) = obj.to_vec(version) else {
            return;
        };
        let again =
            SubgroupObject::decode(&mut &encoded[..], version, props).expect("re-encoded object decodes");
        assert_eq!(obj, again);
    }

    /// Setup option lists, Token structures and object property blocks: the
    /// length-delimited values the session parses out of other messages.
    pub fn values(data: &[u8]) {
        let Some((&selector, input)) = data.split_first() else {
            return;
        };
        let version = version(selector);
        if let Ok(options) = moq_proto::ietf::SetupOptions::decode_list(input, version)
            && let Ok(list) = options.encode_list(version)
        {
            assert_eq!(
                moq_proto::ietf::SetupOptions::decode_list(&list, version).unwrap(),
                options
            );
        }
        if let Ok(token) = moq_proto::ietf::AuthToken::decode(input, version) {
            let bytes = token.to_bytes(version).expect("a decoded token encodes");
            assert_eq!(
                moq_proto::ietf::AuthToken::decode(&bytes, version).unwrap(),
                token
            );
        }
        let block = Bytes::copy_from_slice(input);
        if let Ok(props) = moq_proto::ietf::properties::object_properties(&block, version)
            && let Ok(again) = moq_proto::ietf::properties::object_properties_block(&props, version)
        {
            assert_eq!(
                moq_proto::ietf::properties::object_properties(&again, version).unwrap(),
                props
            );
        }
    }

    /// The legacy in-band SETUP, both directions (the selector picks the
    /// server framing).
    pub fn legacy_setup(data: &[u8]) {
        use moq_proto::legacy::{LegacyClientSetup, LegacyServerSetup, SetupKind};
        let Some((&selector, input)) = data.split_first() else {
            return;
        };
        if let Ok(client) = LegacyClientSetup::decode(&mut &input[..]) {
            let mut wire = Vec::new();
            client.encode(&mut wire).expect("a decoded setup encodes");
            assert_eq!(LegacyClientSetup::decode(&mut &wire[..]).unwrap(), client);
        }
        let kind = [SetupKind::Ietf14, SetupKind::Lite, SetupKind::Ietf7][usize::from(selector) % 3];
        if let Ok(server) = LegacyServerSetup::decode(&mut &input[..], kind) {
            let mut wire = Vec::new();
            server.encode(&mut wire).expect("a decoded setup encodes");
            assert_eq!(LegacyServerSetup::decode(&mut &wire[..], kind).unwrap(), server);
        }
    }
}
