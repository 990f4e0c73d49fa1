#![no_main]

use moq_proto::ControlStream;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<ControlStream>(data, |_| false);
});
