#![no_main]

use moq_proto::AnnounceRequest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<AnnounceRequest>(data, |_| false);
});
