#![no_main]

use moq_proto::SubscribeResponse;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<SubscribeResponse>(data, |_| false);
});
