#![no_main]

use moq_proto::SubscribeUpdate;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<SubscribeUpdate>(data, |_| false);
});
