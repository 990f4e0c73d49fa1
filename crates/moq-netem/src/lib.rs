//! An impaired-network harness for testing MoQ relays and clients on bad links.
//!
//! - [`link`]: the impairment model of one direction (delay, jitter, loss, reordering, a rate
//!   limit with a bounded queue), pure and seeded;
//! - [`shaper`]: drives a link in time, generic over the packet, testable with paused time;
//! - [`proxy`]: a UDP proxy that forwards many clients to one upstream address (each client its
//!   own upstream socket) through two impaired links;
//! - [`probe`]: an echo and a prober that measure loss, round-trip time and delivery rate;
//! - [`lab`]: network namespaces, veth pairs, `tbf` bottlenecks and `nftables` loss, cleaned up
//!   on drop.
//!
//! This kernel has no `tc netem`, so delay, jitter and reordering come from the proxy; `tbf` and
//! `nftables` are used where they work. Nothing here ever sends traffic outside loopback or the
//! namespaces a [`lab::Lab`] created.

pub mod lab;
pub mod link;
pub mod probe;
pub mod proxy;
pub mod shaper;
pub mod units;

pub use link::{Impairment, Link, Verdict};
pub use proxy::{Config, Handle, Proxy, ProxyError, Snapshot};
