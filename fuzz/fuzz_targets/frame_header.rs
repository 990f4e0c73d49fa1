#![no_main]

use moq_proto::FrameHeader;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<FrameHeader>(data, |_| false);
});
