//! What one peer holds on a session right now, checked against its
//! [`Quota`](super::Quota) before anything is stored, and the deadline for the first
//! message of every stream it opens.
//!
//! Every refusal is counted in [`Stats`] by [`Limit`] and logged once per session and
//! limit (a flood from one peer would otherwise fill the log; the counter tells the
//! rest). The refused stream is reset or stopped with the error's code.

use std::{
    fmt::Display,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicUsize, Ordering},
    },
};

use tokio::time::Instant;

use crate::{
    Error, Result,
    stats::{Limit, Stats},
};

/// Slots held per limit, and which limits this session has already logged.
#[derive(Debug)]
pub(crate) struct Usage {
    held: [AtomicUsize; Limit::ALL.len()],
    logged: AtomicU32,
    stats: Arc<Stats>,
}

impl Usage {
    pub(crate) fn new(stats: Arc<Stats>) -> Arc<Self> {
        Arc::new(Self {
            held: Default::default(),
            logged: AtomicU32::new(0),
            stats,
        })
    }

    fn counter(&self, limit: Limit) -> Option<&AtomicUsize> {
        self.held.get(limit.index())
    }

    /// Slots of `limit` held now.
    #[cfg(test)]
    pub(crate) fn held(&self, limit: Limit) -> usize {
        self.counter(limit).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Take one slot of `limit`, or refuse (counted, logged) when `max` are held.
    pub(crate) fn admit(self: &Arc<Self>, limit: Limit, max: usize) -> Result<Slot> {
        self.try_admit(limit, max).ok_or_else(|| {
            self.refuse(limit, format_args!("{max} held"));
            Error::Limit(limit.name())
        })
    }

    /// Take one slot of `limit` if fewer than `max` are held; no refusal is counted.
    pub(crate) fn try_admit(self: &Arc<Self>, limit: Limit, max: usize) -> Option<Slot> {
        let counter = self.counter(limit)?;
        // Counted before the check, so racing admissions never exceed `max` together.
        let before = counter.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            usage: self.clone(),
            limit,
        };
        (before < max).then_some(slot)
    }

    /// Refuse a frame of `size` bytes that would take `group` past the quota's byte or
    /// frame cap (counted, logged); the caller ends the group with the error. Shared by
    /// the moq-lite and moq-transport ingest paths.
    pub(crate) fn group_within_caps(
        &self,
        quota: &crate::session::Quota,
        group: &crate::model::GroupProducer,
        size: u64,
    ) -> Result<()> {
        let bytes = (group.bytes() as u64).saturating_add(size);
        let (limit, detail) = if bytes > quota.max_group_size {
            (
                Limit::GroupSize,
                format!("{bytes} bytes, at most {}", quota.max_group_size),
            )
        } else if group.frames() as u64 >= quota.max_group_frames {
            (Limit::GroupFrames, format!("{} frames", quota.max_group_frames))
        } else {
            return Ok(());
        };
        self.refuse(limit, format_args!("group {}: {detail}", group.sequence()));
        Err(Error::GroupTooLarge)
    }

    /// Count and log a refusal because of `limit`.
    pub(crate) fn refuse(&self, limit: Limit, detail: impl Display) {
        self.stats.refuse(limit);
        let bit = 1u32.checked_shl(limit.index() as u32).unwrap_or(0);
        let first = self.logged.fetch_or(bit, Ordering::Relaxed) & bit == 0;
        if first {
            tracing::info!(
                limit = limit.name(),
                %detail,
                "refused: a limit was reached (further refusals of this kind on this session are only counted)"
            );
        } else {
            tracing::debug!(limit = limit.name(), %detail, "refused: a limit was reached");
        }
    }
}

/// One slot of a limit, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    usage: Arc<Usage>,
    limit: Limit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(counter) = self.usage.counter(self.limit) {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A stream the peer opened, until its type and first message have arrived: it holds
/// a pending-stream slot, and must get there before `deadline`.
#[derive(Debug)]
pub(crate) struct Header {
    deadline: Instant,
    /// Messages still to come before the header is complete.
    messages: u8,
    usage: Arc<Usage>,
    _pending: Slot,
}

impl Header {
    /// The type and one message: every stream a peer opens starts this way.
    const MESSAGES: u8 = 2;

    /// How often the accept loop lets the streams it accepted read their headers before
    /// refusing a new one over the pending limit.
    const YIELDS: usize = 4;

    /// Admit a stream the peer just opened, or refuse it when `max` are pending.
    ///
    /// Streams just accepted count as pending until their task has read the header, which
    /// for a well-behaved peer is already there: a burst of new streams would look like a
    /// flood. So at the limit, the accept loop first yields to let those tasks run, and
    /// refuses only if the streams are still pending then.
    pub(crate) async fn admit(usage: &Arc<Usage>, max: usize, timeout: std::time::Duration) -> Result<Self> {
        let mut pending = usage.try_admit(Limit::PendingStreams, max);
        for _ in 0..Self::YIELDS {
            if pending.is_some() {
                break;
            }
            tokio::task::yield_now().await;
            pending = usage.try_admit(Limit::PendingStreams, max);
        }
        let pending = match pending {
            Some(slot) => slot,
            None => usage.admit(Limit::PendingStreams, max)?,
        };
        let now = Instant::now();
        // A timeout too large to represent means "a day" rather than a panic.
        let deadline = now
            .checked_add(timeout)
            .or_else(|| now.checked_add(std::time::Duration::from_secs(86_400)))
            .unwrap_or(now);
        Ok(Self {
            deadline,
            messages: Self::MESSAGES,
            usage: usage.clone(),
            _pending: pending,
        })
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// One message arrived; whether the header is complete.
    pub(crate) fn received(&mut self) -> bool {
        self.messages = self.messages.saturating_sub(1);
        self.messages == 0
    }

    /// The deadline passed: count it; the error to end the stream with.
    pub(crate) fn expired(&self) -> Error {
        self.usage.refuse(
            Limit::StreamTimeout,
            "no request within the stream header timeout",
        );
        Error::RequestTimeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_refused_past_the_max_counted_and_given_back() {
        let stats = Arc::new(Stats::default());
        let usage = Usage::new(stats.clone());
        let first = usage.admit(Limit::Fetches, 1).unwrap();
        assert_eq!(
            usage.admit(Limit::Fetches, 1).unwrap_err(),
            Error::Limit("fetches_per_session")
        );
        assert_eq!(usage.held(Limit::Fetches), 1, "a refusal holds nothing");
        assert_eq!(stats.refused(Limit::Fetches), 1);
        assert!(
            usage.admit(Limit::TrackRequests, 1).is_ok(),
            "limits are separate"
        );
        drop(first);
        assert_eq!(usage.held(Limit::Fetches), 0);
        assert!(usage.admit(Limit::Fetches, 1).is_ok());
        // A limit of 0 turns the request off.
        assert!(usage.admit(Limit::Groups, 0).is_err());
        assert_eq!(usage.held(Limit::Groups), 0);
    }

    #[tokio::test]
    async fn a_header_holds_a_pending_slot_until_dropped() {
        let stats = Arc::new(Stats::default());
        let usage = Usage::new(stats.clone());
        let second = std::time::Duration::from_secs(1);
        let mut header = Header::admit(&usage, 1, second).await.unwrap();
        assert!(Header::admit(&usage, 1, second).await.is_err());
        assert_eq!(stats.refused(Limit::PendingStreams), 1, "counted once");
        assert!(!header.received());
        assert!(header.received(), "type and one message");
        drop(header);
        assert_eq!(usage.held(Limit::PendingStreams), 0);
    }
}
