#![no_main]

use moq_proto::AnnounceInit;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<AnnounceInit>(data, |_| false);
});
