#![no_main]

use moq_proto::GroupHeader;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<GroupHeader>(data, |_| false);
});
