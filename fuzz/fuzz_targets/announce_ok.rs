#![no_main]

use moq_proto::AnnounceOk;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<AnnounceOk>(data, |_| false);
});
