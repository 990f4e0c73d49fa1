#![no_main]

use moq_proto::Goaway;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<Goaway>(data, |_| false);
});
