#![no_main]

use moq_proto::SessionInfo;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<SessionInfo>(data, |_| false);
});
