#![no_main]

use moq_proto::Subscribe;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<Subscribe>(data, |_| false);
});
