#![no_main]

use moq_proto::Setup;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::round_trip::<Setup>(data, |_| false);
});
