#![no_main]

use moq_proto::Fetch;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<Fetch>(data, |_| false);
});
