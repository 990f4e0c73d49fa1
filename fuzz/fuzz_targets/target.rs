#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::gate::target(data);
});
