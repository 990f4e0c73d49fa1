#![no_main]

use moq_proto::ietf::Message;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::ietf::round_trip::<Message>(data);
});
