//! Drives a [`Link`] in real (or tokio-paused) time: packets come in on a channel, wait until the
//! link says they may leave, and go out through an [`Output`]. Generic over the packet so the
//! timing can be tested without sockets.

use std::{
    cmp::Ordering,
    collections::BinaryHeap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use serde::Serialize;
use tokio::{sync::mpsc, time::Instant};

use crate::link::{Link, Verdict};

/// Where packets go once the link releases them.
pub trait Output<T>: Send {
    /// Send one packet; a failure is the output's to count (a datagram link may lose packets).
    fn send(&mut self, packet: T) -> impl Future<Output = ()> + Send;
}

/// One packet entering the link: its arrival time, size in bytes and payload.
#[derive(Debug)]
pub struct Arrival<T> {
    /// When it arrived (the reader's clock reading).
    pub at: Instant,
    /// Its size on the wire, in bytes.
    pub len: usize,
    /// The packet itself.
    pub packet: T,
}

/// Counters of one direction. Every field only grows.
#[derive(Debug, Default)]
pub struct Counters {
    /// Packets that entered the link.
    pub packets_in: AtomicU64,
    /// Bytes that entered the link.
    pub bytes_in: AtomicU64,
    /// Packets dropped by random loss.
    pub lost: AtomicU64,
    /// Packets dropped because the bottleneck queue was full.
    pub queue_drops: AtomicU64,
    /// Packets handed to the output.
    pub packets_out: AtomicU64,
    /// Bytes handed to the output.
    pub bytes_out: AtomicU64,
    /// Packets delivered before a packet that entered ahead of them.
    pub reordered: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CountersSnapshot {
    /// Packets that entered the link.
    pub packets_in: u64,
    /// Bytes that entered the link.
    pub bytes_in: u64,
    /// Packets dropped by random loss.
    pub lost: u64,
    /// Packets dropped because the bottleneck queue was full.
    pub queue_drops: u64,
    /// Packets handed to the output.
    pub packets_out: u64,
    /// Bytes handed to the output.
    pub bytes_out: u64,
    /// Packets delivered before a packet that entered ahead of them.
    pub reordered: u64,
}

impl Counters {
    /// Read every counter.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            packets_in: self.packets_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            lost: self.lost.load(Relaxed),
            queue_drops: self.queue_drops.load(Relaxed),
            packets_out: self.packets_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            reordered: self.reordered.load(Relaxed),
        }
    }
}

struct Pending<T> {
    at: Instant,
    seq: u64,
    len: usize,
    packet: T,
}

impl<T> PartialEq for Pending<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Pending<T> {}
impl<T> PartialOrd for Pending<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Pending<T> {
    /// Reversed: the heap's top is the earliest departure (ties in arrival order).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Run one direction until the input channel closes and every admitted packet has left.
pub async fn run<T, O>(
    mut link: Link,
    mut input: mpsc::Receiver<Arrival<T>>,
    counters: Arc<Counters>,
    mut output: O,
) where
    T: Send,
    O: Output<T>,
{
    let mut heap: BinaryHeap<Pending<T>> = BinaryHeap::new();
    let mut seq = 0u64;
    // The highest arrival sequence already delivered, to count overtaking.
    let mut delivered_max: Option<u64> = None;
    let mut open = true;
    loop {
        let next = heap.peek().map(|p| p.at);
        if !open && next.is_none() {
            return;
        }
        tokio::select! {
            biased;
            () = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                while heap.peek().is_some_and(|p| p.at <= now) {
                    let Some(p) = heap.pop() else { break };
                    if delivered_max.is_some_and(|m| p.seq < m) {
                        counters.reordered.fetch_add(1, Relaxed);
                    }
                    delivered_max = Some(delivered_max.map_or(p.seq, |m| m.max(p.seq)));
                    counters.packets_out.fetch_add(1, Relaxed);
                    counters.bytes_out.fetch_add(p.len as u64, Relaxed);
                    output.send(p.packet).await;
                }
            }
            arrival = input.recv(), if open => match arrival {
                Some(Arrival { at, len, packet }) => {
                    counters.packets_in.fetch_add(1, Relaxed);
                    counters.bytes_in.fetch_add(len as u64, Relaxed);
                    match link.admit(at, len) {
                        Verdict::Deliver(when) => {
                            heap.push(Pending { at: when, seq, len, packet });
                            seq += 1;
                        }
                        Verdict::Lost => {
                            counters.lost.fetch_add(1, Relaxed);
                        }
                        Verdict::QueueFull => {
                            counters.queue_drops.fetch_add(1, Relaxed);
                        }
                    }
                }
                None => open = false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::link::Impairment;

    /// Records (packet, departure time).
    struct Recorder(mpsc::UnboundedSender<(u32, Instant)>);

    impl Output<u32> for Recorder {
        async fn send(&mut self, packet: u32) {
            let _ = self.0.send((packet, Instant::now()));
        }
    }

    /// Feed `count` packets of `len` bytes, one every `gap`, through a link; return what came out.
    async fn drive(
        spec: &str,
        seed: u64,
        count: u32,
        len: usize,
        gap: Duration,
    ) -> (Vec<(u32, Duration)>, CountersSnapshot) {
        let link = Link::new(spec.parse::<Impairment>().unwrap(), seed).unwrap();
        let (tx, rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let shaper = tokio::spawn(run(link, rx, counters.clone(), Recorder(out_tx)));
        let t0 = Instant::now();
        let mut sent = Vec::new();
        for i in 0..count {
            let at = Instant::now();
            sent.push(at);
            tx.send(Arrival { at, len, packet: i }).await.unwrap();
            tokio::time::sleep(gap).await;
        }
        drop(tx);
        shaper.await.unwrap();
        let mut out = Vec::new();
        while let Ok((i, at)) = out_rx.try_recv() {
            out.push((i, at - sent[i as usize]));
        }
        let _ = t0;
        (out, counters.snapshot())
    }

    #[tokio::test(start_paused = true)]
    async fn delay_is_exact_under_paused_time() {
        let (out, c) = drive("delay=40ms", 1, 100, 1000, Duration::from_millis(5)).await;
        assert_eq!(out.len(), 100);
        assert!(
            out.iter().all(|(_, d)| *d == Duration::from_millis(40)),
            "{out:?}"
        );
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "in order");
        assert_eq!(c.packets_in, 100);
        assert_eq!(c.packets_out, 100);
        assert_eq!(c.bytes_out, 100_000);
        assert_eq!(c.reordered, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_spreads_and_reorders() {
        let (out, c) = drive("delay=40ms,jitter=200ms", 5, 2000, 100, Duration::from_millis(1)).await;
        assert_eq!(out.len(), 2000);
        let min = out.iter().map(|o| o.1).min().unwrap();
        let max = out.iter().map(|o| o.1).max().unwrap();
        assert!(
            min >= Duration::from_millis(40) && min < Duration::from_millis(45),
            "{min:?}"
        );
        assert!(
            max <= Duration::from_millis(240) && max > Duration::from_millis(230),
            "{max:?}"
        );
        let mean = out.iter().map(|o| o.1.as_secs_f64()).sum::<f64>() / out.len() as f64;
        assert!((mean - 0.140).abs() < 0.01, "mean {mean}");
        assert!(
            c.reordered > 500,
            "packets 1 ms apart with 200 ms jitter overtake: {}",
            c.reordered
        );
    }

    #[tokio::test(start_paused = true)]
    async fn loss_counts_and_is_seeded() {
        let (a, ca) = drive("loss=10%", 11, 5000, 100, Duration::from_micros(100)).await;
        let (b, _) = drive("loss=10%", 11, 5000, 100, Duration::from_micros(100)).await;
        assert_eq!(
            a.iter().map(|o| o.0).collect::<Vec<_>>(),
            b.iter().map(|o| o.0).collect::<Vec<_>>(),
            "same seed, same survivors"
        );
        assert_eq!(ca.lost + ca.packets_out, 5000);
        assert!((400..600).contains(&ca.lost), "{}", ca.lost);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_caps_throughput_and_drops_overflow() {
        // 2 Mbit/s offered (1250 B every 5 ms) into 1 Mbit/s with a 10-packet queue, for 1 s.
        let (out, c) = drive("rate=1mbit,queue=12500", 0, 200, 1250, Duration::from_millis(5)).await;
        // The link carries 100 packets per second; the queue adds up to 10 more.
        assert!((100..=112).contains(&out.len()), "{}", out.len());
        assert_eq!(c.queue_drops as usize + out.len(), 200);
        // Queueing delay is bounded by the queue: 10 packets × 10 ms, plus one serialization.
        let worst = out.iter().map(|o| o.1).max().unwrap();
        assert!(worst <= Duration::from_millis(111), "{worst:?}");
        assert!(worst >= Duration::from_millis(90), "{worst:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn packets_in_flight_are_delivered_after_the_input_closes() {
        let (out, _) = drive("delay=1s", 1, 3, 10, Duration::ZERO).await;
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|o| o.1 == Duration::from_secs(1)));
    }
}
