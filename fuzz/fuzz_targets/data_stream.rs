#![no_main]

use moq_proto::DataStream;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<DataStream>(data, |_| false);
});
