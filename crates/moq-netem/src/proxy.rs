//! The UDP impairment proxy: clients send to the proxy's address, the proxy forwards to one
//! upstream address (a relay) through an impaired link, and the replies come back through
//! another. Each client address (its IP and port, so each QUIC connection's 5-tuple) gets its
//! own upstream socket, so the upstream sees as many distinct peers as there are clients and
//! replies find their way back.
//!
//! The two directions are two [`Link`]s shared by every client, as on a real access link: a
//! rate limit is the capacity of the whole link, not of each client.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use serde::Serialize;
use tokio::{net::UdpSocket, sync::mpsc, task::JoinSet, time::Instant};

use crate::{
    link::{ConfigError, Impairment, Link},
    shaper::{self, Arrival, Counters, CountersSnapshot, Output},
};

/// Largest datagram the proxy forwards.
const MAX_DATAGRAM: usize = 65_535;
/// Packets waiting between a socket reader and its direction's shaper.
const CHANNEL: usize = 1024;

/// What the proxy listens on, where it forwards, and how it impairs each direction.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients send (use port 0 for an ephemeral port).
    pub listen: SocketAddr,
    /// The one address every client's packets are forwarded to.
    pub upstream: SocketAddr,
    /// Local address of the per-client upstream sockets; `None` is the unspecified address of
    /// the upstream's family.
    pub upstream_bind: Option<IpAddr>,
    /// Client → upstream.
    pub up: Impairment,
    /// Upstream → client.
    pub down: Impairment,
    /// Seed of the random draws (the down link uses `seed + 1`).
    pub seed: u64,
    /// A client that sent and received nothing for this long is forgotten (its upstream socket
    /// is closed).
    pub idle: Duration,
    /// At most this many clients at once; packets from further clients are dropped and counted.
    pub max_clients: usize,
}

impl Config {
    /// A proxy from `listen` to `upstream` with clean links, seed 0, 60 s idle, 10 000 clients.
    pub fn new(listen: SocketAddr, upstream: SocketAddr) -> Self {
        Self {
            listen,
            upstream,
            upstream_bind: None,
            up: Impairment::default(),
            down: Impairment::default(),
            seed: 0,
            idle: Duration::from_secs(60),
            max_clients: 10_000,
        }
    }
}

/// Why the proxy could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// An impairment setting is invalid.
    #[error("impairment: {0}")]
    Config(#[from] ConfigError),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The listening socket failed while receiving.
    #[error("receiving on {addr}: {source}")]
    Recv {
        /// The listening address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
}

#[derive(Debug, Default)]
struct Stats {
    up: Arc<Counters>,
    down: Arc<Counters>,
    clients_active: AtomicU64,
    clients_total: AtomicU64,
    clients_refused: AtomicU64,
    send_errors: AtomicU64,
    recv_errors: AtomicU64,
}

/// The proxy's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Client → upstream.
    pub up: CountersSnapshot,
    /// Upstream → client.
    pub down: CountersSnapshot,
    /// Clients with a live upstream socket.
    pub clients_active: u64,
    /// Clients seen since the start.
    pub clients_total: u64,
    /// Packets dropped because `max_clients` were already active.
    pub clients_refused: u64,
    /// Datagrams the OS refused to send.
    pub send_errors: u64,
    /// Errors while receiving from upstream (e.g. ICMP port unreachable).
    pub recv_errors: u64,
}

/// A cheap, cloneable view of a running proxy.
#[derive(Debug, Clone)]
pub struct Handle {
    local: SocketAddr,
    stats: Arc<Stats>,
}

impl Handle {
    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Read every counter.
    pub fn snapshot(&self) -> Snapshot {
        let s = &self.stats;
        Snapshot {
            up: s.up.snapshot(),
            down: s.down.snapshot(),
            clients_active: s.clients_active.load(Relaxed),
            clients_total: s.clients_total.load(Relaxed),
            clients_refused: s.clients_refused.load(Relaxed),
            send_errors: s.send_errors.load(Relaxed),
            recv_errors: s.recv_errors.load(Relaxed),
        }
    }
}

/// A bound proxy; nothing moves until [`Proxy::run`] is polled.
#[derive(Debug)]
pub struct Proxy {
    config: Config,
    socket: Arc<UdpSocket>,
    up: Link,
    down: Link,
    handle: Handle,
}

impl Proxy {
    /// Validate the impairments and bind the listening socket.
    pub async fn bind(config: Config) -> Result<Self, ProxyError> {
        let up = Link::new(config.up.clone(), config.seed)?;
        let down = Link::new(config.down.clone(), config.seed.wrapping_add(1))?;
        let socket = UdpSocket::bind(config.listen)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: config.listen,
                source,
            })?;
        let local = socket.local_addr().map_err(|source| ProxyError::Bind {
            addr: config.listen,
            source,
        })?;
        Ok(Self {
            config,
            socket: Arc::new(socket),
            up,
            down,
            handle: Handle {
                local,
                stats: Arc::default(),
            },
        })
    }

    /// A view for counters and the local address, usable while `run` goes on.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Forward packets until an unrecoverable error on the listening socket. Every task it starts
    /// belongs to it: dropping this future stops them all.
    pub async fn run(self) -> Result<(), ProxyError> {
        let Self {
            config,
            socket,
            up,
            down,
            handle,
        } = self;
        let stats = handle.stats.clone();
        let mut tasks = JoinSet::new();
        let (up_tx, down_tx) = spawn_shapers(&mut tasks, up, down, &socket, &stats);

        let epoch = Instant::now();
        let mut clients: HashMap<SocketAddr, Client> = HashMap::new();
        let mut reap = tokio::time::interval(config.idle.max(Duration::from_millis(200)) / 2);
        reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                received = socket.recv_from(&mut buf) => {
                    let (n, from) = match received {
                        Ok(r) => r,
                        Err(e) if transient(&e) => {
                            stats.recv_errors.fetch_add(1, Relaxed);
                            continue;
                        }
                        Err(source) => return Err(ProxyError::Recv { addr: handle.local, source }),
                    };
                    let now = Instant::now();
                    let client = match clients.get_mut(&from) {
                        Some(c) => c,
                        None => {
                            if clients.len() >= config.max_clients {
                                stats.clients_refused.fetch_add(1, Relaxed);
                                continue;
                            }
                            let Some(c) = Client::open(&config, from, epoch, &stats, &down_tx, &mut tasks).await
                            else {
                                continue;
                            };
                            clients.entry(from).or_insert(c)
                        }
                    };
                    client.last_up = now;
                    let packet = (client.socket.clone(), Bytes::copy_from_slice(buf.get(..n).unwrap_or_default()));
                    if up_tx.send(Arrival { at: now, len: n, packet }).await.is_err() {
                        return Ok(());
                    }
                }
                _ = reap.tick() => {
                    reap_idle(&mut clients, epoch, config.idle, &stats);
                    // Collect finished reader tasks.
                    while tasks.try_join_next().is_some() {}
                }
            }
        }
    }
}

/// A datagram towards the upstream: the client's upstream socket and the payload.
type UpPacket = (Arc<UdpSocket>, Bytes);

/// A datagram towards a client: its address and the payload.
type DownPacket = (SocketAddr, Bytes);

/// Start the two shapers (towards the upstream, towards the clients) as tasks of `tasks`.
/// Returns their inputs.
fn spawn_shapers(
    tasks: &mut JoinSet<()>,
    up: Link,
    down: Link,
    socket: &Arc<UdpSocket>,
    stats: &Arc<Stats>,
) -> (mpsc::Sender<Arrival<UpPacket>>, mpsc::Sender<Arrival<DownPacket>>) {
    let (up_tx, up_rx) = mpsc::channel(CHANNEL);
    let (down_tx, down_rx) = mpsc::channel(CHANNEL);
    tasks.spawn(shaper::run(
        up,
        up_rx,
        stats.up.clone(),
        ToUpstream(stats.clone()),
    ));
    tasks.spawn(shaper::run(
        down,
        down_rx,
        stats.down.clone(),
        ToClient {
            socket: socket.clone(),
            stats: stats.clone(),
        },
    ));
    (up_tx, down_tx)
}

/// Forget the clients quiet both ways for `idle` (stopping their readers).
fn reap_idle(clients: &mut HashMap<SocketAddr, Client>, epoch: Instant, idle: Duration, stats: &Stats) {
    let now = Instant::now();
    clients.retain(|_, c| {
        let down = epoch + Duration::from_micros(c.last_down.load(Relaxed));
        let alive = now.duration_since(c.last_up.max(down)) < idle;
        if !alive {
            c.reader.abort();
            stats.clients_active.fetch_sub(1, Relaxed);
        }
        alive
    });
}

/// Errors a UDP socket reports for an earlier datagram (ICMP unreachable), not for itself.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset | io::ErrorKind::HostUnreachable
    )
}

/// One client address and its upstream socket.
struct Client {
    socket: Arc<UdpSocket>,
    last_up: Instant,
    /// Microseconds after the proxy's epoch of the last packet from upstream.
    last_down: Arc<AtomicU64>,
    reader: tokio::task::AbortHandle,
}

impl Client {
    async fn open(
        config: &Config,
        from: SocketAddr,
        epoch: Instant,
        stats: &Arc<Stats>,
        down_tx: &mpsc::Sender<Arrival<(SocketAddr, Bytes)>>,
        tasks: &mut JoinSet<()>,
    ) -> Option<Self> {
        let bind_ip = config.upstream_bind.unwrap_or(match config.upstream {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        let socket = match UdpSocket::bind((bind_ip, 0)).await {
            Ok(s) => s,
            Err(_) => {
                stats.send_errors.fetch_add(1, Relaxed);
                return None;
            }
        };
        if socket.connect(config.upstream).await.is_err() {
            stats.send_errors.fetch_add(1, Relaxed);
            return None;
        }
        let socket = Arc::new(socket);
        let last_down = Arc::new(AtomicU64::new(0));
        let reader = tasks.spawn(read_upstream(
            socket.clone(),
            from,
            epoch,
            last_down.clone(),
            stats.clone(),
            down_tx.clone(),
        ));
        stats.clients_active.fetch_add(1, Relaxed);
        stats.clients_total.fetch_add(1, Relaxed);
        Some(Self {
            socket,
            last_up: Instant::now(),
            last_down,
            reader,
        })
    }
}

/// Replies from upstream for one client, into the down link.
async fn read_upstream(
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    epoch: Instant,
    last_down: Arc<AtomicU64>,
    stats: Arc<Stats>,
    down_tx: mpsc::Sender<Arrival<(SocketAddr, Bytes)>>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv(&mut buf).await {
            Ok(n) => {
                let at = Instant::now();
                last_down.store(at.duration_since(epoch).as_micros() as u64, Relaxed);
                let packet = (client, Bytes::copy_from_slice(buf.get(..n).unwrap_or_default()));
                if down_tx.send(Arrival { at, len: n, packet }).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                stats.recv_errors.fetch_add(1, Relaxed);
                if !transient(&e) {
                    return;
                }
            }
        }
    }
}

struct ToUpstream(Arc<Stats>);

impl Output<(Arc<UdpSocket>, Bytes)> for ToUpstream {
    async fn send(&mut self, (socket, payload): (Arc<UdpSocket>, Bytes)) {
        if socket.send(&payload).await.is_err() {
            self.0.send_errors.fetch_add(1, Relaxed);
        }
    }
}

struct ToClient {
    socket: Arc<UdpSocket>,
    stats: Arc<Stats>,
}

impl Output<(SocketAddr, Bytes)> for ToClient {
    async fn send(&mut self, (to, payload): (SocketAddr, Bytes)) {
        if self.socket.send_to(&payload, to).await.is_err() {
            self.stats.send_errors.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                // Reply with the sender's port appended, so the client sees which 5-tuple arrived.
                let mut reply = buf[..n].to_vec();
                reply.extend_from_slice(&from.port().to_be_bytes());
                let _ = socket.send_to(&reply, from).await;
            }
        });
        (addr, task)
    }

    async fn start(config: Config) -> (Handle, tokio::task::JoinHandle<Result<(), ProxyError>>) {
        let proxy = Proxy::bind(config).await.unwrap();
        let handle = proxy.handle();
        (handle, tokio::spawn(proxy.run()))
    }

    async fn recv_within(socket: &UdpSocket, limit: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        match tokio::time::timeout(limit, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn forwards_with_delay_on_real_sockets() {
        let (echo, _echo_task) = echo_server().await;
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), echo);
        config.up = "delay=30ms".parse().unwrap();
        config.down = "delay=20ms".parse().unwrap();
        let (handle, _task) = start(config).await;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(handle.local_addr()).await.unwrap();
        for i in 0..5u8 {
            let t0 = std::time::Instant::now();
            client.send(&[i; 100]).await.unwrap();
            let reply = recv_within(&client, Duration::from_secs(5))
                .await
                .expect("a reply");
            let rtt = t0.elapsed();
            assert_eq!(&reply[..100], &[i; 100]);
            assert!(rtt >= Duration::from_millis(50), "{rtt:?}");
            assert!(rtt < Duration::from_millis(500), "{rtt:?}");
        }
        let s = handle.snapshot();
        assert_eq!((s.up.packets_out, s.down.packets_out), (5, 5));
        assert_eq!(s.up.bytes_in, 500);
        assert_eq!((s.clients_total, s.clients_active), (1, 1));
    }

    #[tokio::test]
    async fn each_client_gets_its_own_upstream_socket() {
        let (echo, _echo_task) = echo_server().await;
        let (handle, _task) = start(Config::new("127.0.0.1:0".parse().unwrap(), echo)).await;
        let mut ports = std::collections::HashSet::new();
        let mut clients = Vec::new();
        for _ in 0..20 {
            let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            c.connect(handle.local_addr()).await.unwrap();
            clients.push(c);
        }
        for (i, c) in clients.iter().enumerate() {
            c.send(&[i as u8; 8]).await.unwrap();
        }
        for (i, c) in clients.iter().enumerate() {
            let reply = recv_within(c, Duration::from_secs(5)).await.expect("a reply");
            // Each client gets its own reply back, not another client's.
            assert_eq!(&reply[..8], &[i as u8; 8]);
            ports.insert(u16::from_be_bytes([reply[8], reply[9]]));
            // A second packet from the same client reuses the same upstream port.
            c.send(&[i as u8; 8]).await.unwrap();
            let again = recv_within(c, Duration::from_secs(5)).await.expect("a reply");
            assert_eq!(again[8..], reply[8..]);
        }
        assert_eq!(ports.len(), 20, "20 clients, 20 upstream sockets");
        assert_eq!(handle.snapshot().clients_total, 20);
    }

    #[tokio::test]
    async fn clients_over_the_limit_are_refused_and_counted() {
        let (echo, _echo_task) = echo_server().await;
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), echo);
        config.max_clients = 2;
        let (handle, _task) = start(config).await;
        let mut answered = 0;
        for _ in 0..3 {
            let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            c.connect(handle.local_addr()).await.unwrap();
            c.send(b"hi").await.unwrap();
            if recv_within(&c, Duration::from_millis(300)).await.is_some() {
                answered += 1;
            }
        }
        assert_eq!(answered, 2);
        let s = handle.snapshot();
        assert_eq!((s.clients_total, s.clients_refused), (2, 1));
    }

    #[tokio::test]
    async fn idle_clients_are_forgotten() {
        let (echo, _echo_task) = echo_server().await;
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), echo);
        config.idle = Duration::from_millis(200);
        let (handle, _task) = start(config).await;
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(handle.local_addr()).await.unwrap();
        c.send(b"a").await.unwrap();
        let first = recv_within(&c, Duration::from_secs(5)).await.expect("a reply");
        assert_eq!(handle.snapshot().clients_active, 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while handle.snapshot().clients_active != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle client was never forgotten"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // It comes back as a new client with a new upstream socket.
        c.send(b"a").await.unwrap();
        let second = recv_within(&c, Duration::from_secs(5)).await.expect("a reply");
        assert_ne!(first[1..], second[1..], "a fresh upstream port");
        assert_eq!(handle.snapshot().clients_total, 2);
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_counted_not_fatal() {
        // Bind and drop a socket: its port is (almost surely) closed, so sends draw ICMP errors.
        let dead = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (handle, task) = start(Config::new("127.0.0.1:0".parse().unwrap(), dead)).await;
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(handle.local_addr()).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            c.send(b"anyone?").await.unwrap();
            let s = handle.snapshot();
            if s.recv_errors + s.send_errors > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no error was counted: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!task.is_finished(), "the proxy keeps running");
    }

    #[tokio::test]
    async fn bind_and_config_errors() {
        let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = Proxy::bind(Config::new(addr, addr)).await.unwrap_err();
        assert!(matches!(err, ProxyError::Bind { .. }), "{err}");
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), addr);
        config.down.loss = 2.0;
        let err = Proxy::bind(config).await.unwrap_err();
        assert!(matches!(err, ProxyError::Config(_)), "{err}");
    }
}
