#![no_main]

use moq_proto::Datagram;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<Datagram>(data, |_| false);
});
