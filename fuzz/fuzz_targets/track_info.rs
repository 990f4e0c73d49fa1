#![no_main]

use moq_proto::TrackInfo;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<TrackInfo>(data, |_| false);
});
