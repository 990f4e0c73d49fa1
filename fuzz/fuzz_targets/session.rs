#![no_main]

// Every allocation counted; going over the cap (256 MiB live) aborts.
#[global_allocator]
static ALLOC: moq_proto_fuzz::alloc::Counting = moq_proto_fuzz::alloc::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto_fuzz::session::run(data);
});
