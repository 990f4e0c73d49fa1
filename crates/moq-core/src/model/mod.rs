//! The media model: broadcasts hold tracks, tracks hold groups, groups hold
//! frames. Producers write, consumers read; payload bytes are shared
//! (`bytes::Bytes`), never copied per consumer.

pub mod broadcast;
pub mod cache;
pub mod group;
pub mod origin;
pub mod track;

pub use broadcast::{BroadcastConsumer, BroadcastProducer};
pub use cache::CacheConfig;
pub use group::{Frame, GroupConsumer, GroupProducer};
pub use origin::{Announced, Origin, OriginEvent, Publication};
pub use track::{TrackConsumer, TrackInfo, TrackProducer};
