//! QUIC transport settings and UDP socket setup shared by the server and the client.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use crate::Error;

/// QUIC limits, sized for a relay that carries many subscriptions per connection.
///
/// The same settings apply to every connection of an endpoint, in both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How many bidirectional streams the peer may have open at once, at most (default
    /// 10 000). moq-lite opens one per subscription and announcement interest.
    pub max_bidi_streams: u32,
    /// How many unidirectional streams the peer may have open at once, at most (default
    /// 10 000). moq-lite opens one per group, so this bounds groups in flight.
    pub max_uni_streams: u32,
    /// The stream limit a new connection starts with, per direction (default 100, quinn's
    /// own default; clamped to `1..=max_*_streams`). It doubles towards `max_*_streams`
    /// while the peer keeps more than half of it open, see
    /// [`MoqSession`](crate::adapter::MoqSession).
    ///
    /// Why not grant the maximum up front: quinn allocates the state of every stream the
    /// peer may open as soon as it grants the credit. 10 000 of each cost about 1.1 MiB
    /// per connection, most of a relay's memory with thousands of idle subscribers.
    pub initial_streams: u32,
    /// A connection with no traffic for this long is dropped (default 30 s).
    pub idle_timeout: Duration,
    /// Send a PING after this much quiet so NATs and the idle timer stay open
    /// (default 5 s; `None` disables keep-alives).
    pub keep_alive: Option<Duration>,
    /// Accept QUIC datagrams (default true); moq-lite-05+ may carry single-frame groups in them.
    pub datagrams: bool,
    /// Limit on connection setup: the QUIC handshake, and on the server also the
    /// WebTransport CONNECT that follows it (default 10 s). A peer that finishes the
    /// QUIC handshake and then goes silent is dropped after this long instead of being
    /// kept alive by our own keep-alives.
    pub handshake_timeout: Duration,
    /// Bytes the peer may have in flight to us across all streams of a connection
    /// before it must wait for us to read (default 16 MiB). Bounds what one peer can
    /// make us buffer; QUIC's own default is unlimited.
    pub receive_window: u32,
    /// Bytes the peer may have in flight to us on one stream (default 4 MiB, enough
    /// for a large key frame without stalling).
    pub stream_receive_window: u32,
    /// The congestion controller (default BBR with a loss bound, see [`crate::congestion`]).
    pub congestion: Congestion,
}

/// A QUIC congestion controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Congestion {
    /// Loss-based: CUBIC (RFC 9438), quinn's own default.
    Cubic,
    /// Delay-based: BBR, with a cap on what is in flight once loss comes from a full
    /// queue ([`crate::congestion::BoundedBbrConfig`]). The default: it keeps viewers on
    /// lossy and jittery links live, where CUBIC falls behind.
    #[default]
    Bbr,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_bidi_streams: 10_000,
            max_uni_streams: 10_000,
            initial_streams: 100,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(5)),
            datagrams: true,
            handshake_timeout: Duration::from_secs(10),
            receive_window: 16 << 20,
            stream_receive_window: 4 << 20,
            congestion: Congestion::default(),
        }
    }
}

impl Config {
    /// The quinn transport configuration for these limits.
    pub(crate) fn transport(&self) -> Result<Arc<quinn::TransportConfig>, Error> {
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_bidi_streams(self.initial(self.max_bidi_streams).into());
        transport.max_concurrent_uni_streams(self.initial(self.max_uni_streams).into());

        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| Error::QuicConfig(format!("idle timeout {:?} is too large", self.idle_timeout)))?;
        transport.max_idle_timeout(Some(idle));

        if let Some(keep_alive) = self.keep_alive {
            if keep_alive >= self.idle_timeout {
                // A keep-alive slower than the idle timeout cannot keep anything alive.
                return Err(Error::QuicConfig(format!(
                    "keep-alive {keep_alive:?} must be shorter than the idle timeout {:?}",
                    self.idle_timeout
                )));
            }
            transport.keep_alive_interval(Some(keep_alive));
        }

        transport.receive_window(self.receive_window.into());
        transport.stream_receive_window(self.stream_receive_window.into());

        if !self.datagrams {
            transport.datagram_receive_buffer_size(None);
        }
        // Reordering tolerance. quinn sends in GSO bursts, and a link that jitters per packet
        // reorders a burst: with the RFC's thresholds (3 packets, 9/8 RTT) 20 ms of jitter at
        // 80 ms RTT read as loss and cost a CUBIC sender 72% of a 2 Mbit/s stream. These keep
        // such reordering from counting as loss; a real loss is declared a little later (at
        // 1.25 RTT), which measured no slower for viewers at 1% loss (`bench/README.md`).
        transport.packet_threshold(REORDER_PACKETS);
        transport.time_threshold(REORDER_TIME);
        if self.congestion == Congestion::Bbr {
            transport.congestion_controller_factory(Arc::new(crate::congestion::BoundedBbrConfig::default()));
        }

        Ok(Arc::new(transport))
    }

    /// The stream limit a connection starts with in a direction whose ceiling is `max`.
    pub(crate) fn initial(&self, max: u32) -> u32 {
        self.initial_streams.clamp(max.min(1), max)
    }
}

/// Packets a later packet may overtake before the earlier one counts as lost.
const REORDER_PACKETS: u32 = 20;

/// How long, in round trips, a packet may be outrun by later ones before it counts as lost.
const REORDER_TIME: f32 = 1.25;

/// Bind a UDP socket for a quinn endpoint.
///
/// An IPv6 wildcard address is made dual-stack (IPV6_V6ONLY off) explicitly rather than
/// trusting the system default (`net.ipv6.bindv6only`, BSD and Windows default to
/// v6-only), so IPv4 clients reach a server on `[::]` and a client on `[::]` can dial
/// IPv4 addresses. On a host without IPv6 the wildcard falls back to `0.0.0.0`.
pub(crate) fn bind(addr: SocketAddr, server: Option<quinn::ServerConfig>) -> Result<quinn::Endpoint, Error> {
    let socket = match socket(addr) {
        Ok(socket) => socket,
        // Only a host without IPv6 falls back; a port in use (or not ours to take) is
        // reported as what it is.
        Err(err)
            if addr.is_ipv6()
                && addr.ip().is_unspecified()
                && !matches!(
                    err.kind(),
                    std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied
                ) =>
        {
            let v4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port());
            tracing::warn!(%addr, %err, fallback = %v4, "IPv6 unavailable; binding IPv4 only");
            socket(v4).map_err(|source| Error::Bind { addr: v4, source })?
        }
        Err(source) => return Err(Error::Bind { addr, source }),
    };

    let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
        .map_err(|source| Error::Bind { addr, source })
}

fn socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};

    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6()
        && addr.ip().is_unspecified()
        && let Err(err) = socket.set_only_v6(false)
    {
        tracing::warn!(%addr, %err, "cannot make the IPv6 socket dual-stack; IPv4 peers will not reach it");
    }
    // Bursts of datagrams are dropped in the kernel when these buffers are small.
    // The kernel caps the request at net.core.{r,w}mem_max; ask anyway.
    for (what, result) in [
        ("receive", socket.set_recv_buffer_size(SOCKET_BUFFER)),
        ("send", socket.set_send_buffer_size(SOCKET_BUFFER)),
    ] {
        if let Err(err) = result {
            tracing::debug!(%addr, %err, "cannot set the UDP {what} buffer size");
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// UDP socket buffer size requested for every endpoint, in bytes.
pub const SOCKET_BUFFER: usize = 8 << 20;
