//! Test-only crate: checks that the ecosystem's reference decoder (`moq-net`
//! 0.3.18 from crates.io) accepts every message our codec writes. The tests
//! live in `tests/`; this library is intentionally empty.
