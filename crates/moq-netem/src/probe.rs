//! Measure a path: [`echo`] answers every probe packet with a short acknowledgement, and
//! [`probe`] sends paced packets to it and reports the loss, round-trip times and the rate at
//! which acknowledgements came back. Used to check that an impaired link does what it was told.
//!
//! Probe packets are `b"MQNP"`, the sequence number (u64, big-endian), the send time in
//! microseconds since the probe started (u64), then zeros up to the packet size. The
//! acknowledgement is the first 20 bytes of the probe packet.

use std::{collections::HashSet, io, net::SocketAddr, time::Duration};

use serde::Serialize;
use tokio::{net::UdpSocket, time::Instant};

const MAGIC: &[u8; 4] = b"MQNP";
/// Bytes of the probe header, and of an acknowledgement.
pub const HEADER: usize = 20;

/// How to probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The echo's address.
    pub target: SocketAddr,
    /// Offered load in bits per second (UDP payload).
    pub rate: u64,
    /// Bytes per packet (at least [`HEADER`]).
    pub size: usize,
    /// How long to send.
    pub duration: Duration,
    /// How long to wait for late acknowledgements after the last send.
    pub wait: Duration,
}

/// Round-trip times in milliseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Rtt {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// What a probe measured.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ProbeReport {
    /// Packets sent.
    pub sent: u64,
    /// Distinct packets acknowledged.
    pub acked: u64,
    /// Acknowledgements for a packet already acknowledged.
    pub duplicates: u64,
    /// Acknowledgements that arrived after one for a later packet.
    pub reordered: u64,
    /// Datagrams that were not acknowledgements of this probe.
    pub invalid: u64,
    /// `1 - acked / sent`: loss over the round trip (both directions).
    pub loss: f64,
    /// Round-trip times of acknowledged packets.
    pub rtt_ms: Rtt,
    /// The offered load actually sent, bits/s.
    pub sent_bps: f64,
    /// Acknowledged payload per second between the first and the last acknowledgement, bits/s:
    /// the forward path's delivery rate when the return path is not the bottleneck.
    pub acked_bps: f64,
}

/// Answer every probe packet arriving on `socket` until the future is dropped. Datagrams that
/// are not probe packets are ignored.
pub async fn echo(socket: UdpSocket) -> io::Result<()> {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        let Some(head) = buf.get(..HEADER).filter(|_| n >= HEADER) else {
            continue;
        };
        if !head.starts_with(MAGIC) {
            continue;
        }
        // A send error (the prober went away) is not the echo's problem.
        let _ = socket.send_to(head, from).await;
    }
}

fn parse_ack(data: &[u8]) -> Option<(u64, u64)> {
    if data.len() != HEADER || !data.starts_with(MAGIC) {
        return None;
    }
    let seq = u64::from_be_bytes(data.get(4..12)?.try_into().ok()?);
    let sent = u64::from_be_bytes(data.get(12..20)?.try_into().ok()?);
    Some((seq, sent))
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

/// Send paced probe packets to an echo and measure what comes back.
pub async fn probe(config: &ProbeConfig) -> io::Result<ProbeReport> {
    if config.size < HEADER || config.rate == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("probe packets need at least {HEADER} bytes and a rate above 0"),
        ));
    }
    let bind: SocketAddr = match config.target {
        SocketAddr::V4(_) => "0.0.0.0:0",
        SocketAddr::V6(_) => "[::]:0",
    }
    .parse()
    .map_err(|_| io::Error::other("bad bind address"))?;
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(config.target).await?;
    let t0 = Instant::now();
    let per_packet = config.size as f64 * 8.0 / config.rate as f64;
    let total = (config.duration.as_secs_f64() / per_packet).floor() as u64;
    let send_end = t0 + config.duration;

    let sender = send_paced(&socket, config.size, t0, per_packet, total);
    let receiver = receive_acks(&socket, t0, total, send_end + config.wait);
    let (sent, received) = tokio::join!(sender, receiver);
    let Acks {
        acked,
        duplicates,
        reordered,
        invalid,
        mut rtts,
        first,
        last,
    } = received?;
    rtts.sort_by(f64::total_cmp);
    let bits = config.size as f64 * 8.0;
    let acked_bps = match (first, last) {
        (Some(a), Some(b)) if b > a && acked > 1 => (acked - 1) as f64 * bits / (b - a).as_secs_f64(),
        _ => 0.0,
    };
    Ok(ProbeReport {
        sent,
        acked,
        duplicates,
        reordered,
        invalid,
        loss: if sent == 0 {
            0.0
        } else {
            1.0 - acked as f64 / sent as f64
        },
        rtt_ms: Rtt {
            min: rtts.first().copied().unwrap_or(0.0),
            p50: quantile(&rtts, 0.5),
            p99: quantile(&rtts, 0.99),
            max: rtts.last().copied().unwrap_or(0.0),
        },
        sent_bps: sent as f64 * bits / config.duration.as_secs_f64().max(1e-9),
        acked_bps,
    })
}

/// Send `total` probe packets of `size` bytes, one every `per_packet` seconds from `t0`
/// (caught up in bursts, checked every millisecond). Returns how many were sent.
async fn send_paced(socket: &UdpSocket, size: usize, t0: Instant, per_packet: f64, total: u64) -> u64 {
    let mut packet = vec![0u8; size];
    packet[..4].copy_from_slice(MAGIC);
    let mut seq = 0u64;
    while seq < total {
        let due = ((Instant::now() - t0).as_secs_f64() / per_packet).floor() as u64 + 1;
        while seq < due.min(total) {
            packet[4..12].copy_from_slice(&seq.to_be_bytes());
            let sent = (Instant::now() - t0).as_micros() as u64;
            packet[12..20].copy_from_slice(&sent.to_be_bytes());
            // A refused send (ICMP from an earlier packet) still counts as sent and lost.
            let _ = socket.send(&packet).await;
            seq += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    seq
}

/// What came back from the echo.
struct Acks {
    /// Distinct probe packets acknowledged.
    acked: u64,
    duplicates: u64,
    /// Acknowledgements older than one already seen.
    reordered: u64,
    /// Datagrams that are no acknowledgement of ours.
    invalid: u64,
    /// Round-trip times, milliseconds, in arrival order.
    rtts: Vec<f64>,
    /// When the first and the last acknowledgement arrived.
    first: Option<Instant>,
    last: Option<Instant>,
}

/// Collect the echo's acknowledgements of the `total` packets sent from `t0`, until `end`.
async fn receive_acks(socket: &UdpSocket, t0: Instant, total: u64, end: Instant) -> io::Result<Acks> {
    let mut seen = HashSet::new();
    let mut rtts = Vec::new();
    let (mut duplicates, mut reordered, mut invalid) = (0, 0, 0);
    let mut highest: Option<u64> = None;
    let (mut first, mut last) = (None, None);
    let mut buf = vec![0u8; 2048];
    loop {
        let n = match tokio::time::timeout_at(end, socket.recv(&mut buf)).await {
            Err(_) => break,
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Ok(Err(e)) => return Err(e),
            Ok(Ok(n)) => n,
        };
        let now = Instant::now();
        let Some((seq, sent)) = buf.get(..n).and_then(parse_ack) else {
            invalid += 1;
            continue;
        };
        if seq >= total {
            invalid += 1;
            continue;
        }
        if !seen.insert(seq) {
            duplicates += 1;
            continue;
        }
        if highest.is_some_and(|h| seq < h) {
            reordered += 1;
        }
        highest = Some(highest.map_or(seq, |h| h.max(seq)));
        let rtt = (now - t0).as_micros() as f64 - sent as f64;
        rtts.push(rtt / 1000.0);
        first.get_or_insert(now);
        last = Some(now);
    }
    Ok(Acks {
        acked: seen.len() as u64,
        duplicates,
        reordered,
        invalid,
        rtts,
        first,
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{Config, Proxy};

    async fn start_echo() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(echo(socket));
        addr
    }

    fn config(target: SocketAddr) -> ProbeConfig {
        ProbeConfig {
            target,
            rate: 1_000_000,
            size: 500,
            duration: Duration::from_millis(500),
            wait: Duration::from_millis(500),
        }
    }

    #[tokio::test]
    async fn clean_loopback_loses_nothing() {
        let target = start_echo().await;
        let r = probe(&config(target)).await.unwrap();
        assert_eq!(r.sent, 125);
        assert_eq!(r.acked, 125);
        assert_eq!(r.loss, 0.0);
        assert!(r.rtt_ms.p50 < 50.0, "{r:?}");
    }

    #[tokio::test]
    async fn through_the_proxy_sees_its_loss_and_delay() {
        let target = start_echo().await;
        let mut c = Config::new("127.0.0.1:0".parse().unwrap(), target);
        c.up = "delay=25ms,loss=20%".parse().unwrap();
        c.down = "delay=25ms".parse().unwrap();
        c.seed = 5;
        let proxy = Proxy::bind(c).await.unwrap();
        let handle = proxy.handle();
        tokio::spawn(proxy.run());
        let mut pc = config(handle.local_addr());
        pc.rate = 4_000_000;
        pc.duration = Duration::from_secs(1);
        let r = probe(&pc).await.unwrap();
        assert_eq!(r.sent, 1000);
        // The proxy's own count is exact; the probe misses those datagrams (and, on a busy
        // machine, perhaps a few that overflowed a socket buffer).
        let lost = handle.snapshot().up.lost;
        let missed = r.sent - r.acked;
        assert!(
            missed >= lost && missed <= lost + 10,
            "missed {missed}, proxy lost {lost}: {r:?}"
        );
        assert!((150..250).contains(&lost), "{lost}");
        assert!(r.rtt_ms.min >= 50.0, "{r:?}");
        assert!(r.rtt_ms.p50 < 150.0, "{r:?}");
    }

    #[tokio::test]
    async fn echo_ignores_garbage_and_probe_counts_it() {
        let target = start_echo().await;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(target).await.unwrap();
        client.send(b"short").await.unwrap();
        client.send(&[7u8; 40]).await.unwrap();
        let mut buf = [0u8; 64];
        let reply = tokio::time::timeout(Duration::from_millis(200), client.recv(&mut buf)).await;
        assert!(reply.is_err(), "no answer to garbage");
        assert_eq!(parse_ack(b"MQNPshort"), None);
        assert_eq!(parse_ack(&[0u8; HEADER]), None);
        let mut ok = [0u8; HEADER];
        ok[..4].copy_from_slice(MAGIC);
        ok[11] = 3;
        ok[19] = 9;
        assert_eq!(parse_ack(&ok), Some((3, 9)));
    }

    #[tokio::test]
    async fn probe_refuses_bad_settings() {
        let mut c = config("127.0.0.1:9".parse().unwrap());
        c.size = 10;
        assert_eq!(probe(&c).await.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        c.size = 100;
        c.rate = 0;
        assert_eq!(probe(&c).await.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
