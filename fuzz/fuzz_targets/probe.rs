#![no_main]

use moq_proto::Probe;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<Probe>(data, |_| false);
});
