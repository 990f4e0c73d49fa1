#![no_main]

use moq_proto::Announce;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<Announce>(data, |m| matches!(m, Announce::Unknown { .. }));
});
