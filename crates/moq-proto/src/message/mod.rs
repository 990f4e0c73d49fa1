//! Every moq-lite message, one file each. Version differences live inside
//! each message's file.

mod announce;
mod datagram;
mod fetch;
mod frame;
mod goaway;
mod group;
mod probe;
mod session_info;
mod setup;
mod subscribe;
mod track;

pub use announce::{Announce, AnnounceInit, AnnounceOk, AnnounceRequest, Cost};
pub use datagram::Datagram;
pub use fetch::Fetch;
pub use frame::{FrameHeader, TimestampCursor};
pub use goaway::Goaway;
pub use group::GroupHeader;
pub use probe::Probe;
pub use session_info::SessionInfo;
pub use setup::{ProbeLevel, Role, Setup};
pub use subscribe::{Range, Subscribe, SubscribeDrop, SubscribeOk, SubscribeResponse, SubscribeUpdate};
pub use track::{TrackInfo, TrackRequest};
