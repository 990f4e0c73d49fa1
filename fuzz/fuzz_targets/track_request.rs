#![no_main]

use moq_proto::TrackRequest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<TrackRequest>(data, |_| false);
});
