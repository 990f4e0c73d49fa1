//! `moq-netem`: the UDP impairment proxy, and an echo/probe pair to measure a path.
//!
//! ```text
//! moq-netem proxy --listen 127.0.0.1:4000 --upstream 10.77.2.1:4443 --both delay=40ms --down loss=1%
//! moq-netem echo --bind 0.0.0.0:9000
//! moq-netem probe --target 10.77.2.1:9000 --rate 8mbit --duration 3s
//! ```

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use moq_netem::{
    Impairment,
    probe::{self, ProbeConfig},
    proxy::{Config, Proxy},
    units,
};

#[derive(Parser, Debug)]
#[command(
    name = "moq-netem",
    version,
    about = "Impair UDP paths: a delaying, dropping, reordering, rate-limiting proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Forward UDP from clients to one upstream address through impaired links.
    Proxy(Box<ProxyArgs>),
    /// Answer probe packets (run it at the far end of the path).
    Echo {
        /// Address to listen on.
        #[arg(long)]
        bind: SocketAddr,
    },
    /// Send paced probe packets to an echo and print loss, RTT and delivery rate as JSON.
    Probe {
        /// The echo's address.
        #[arg(long)]
        target: SocketAddr,
        /// Offered load (e.g. 2mbit).
        #[arg(long, default_value = "1mbit", value_parser = units::bitrate)]
        rate: u64,
        /// Bytes per packet.
        #[arg(long, default_value_t = 1200)]
        size: usize,
        /// How long to send.
        #[arg(long, default_value = "3s", value_parser = units::duration)]
        duration: Duration,
        /// How long to wait for late acknowledgements.
        #[arg(long, default_value = "1s", value_parser = units::duration)]
        wait: Duration,
    },
}

#[derive(clap::Args, Debug)]
struct ProxyArgs {
    /// Where clients send.
    #[arg(long)]
    listen: SocketAddr,
    /// Where every client's packets go.
    #[arg(long)]
    upstream: SocketAddr,
    /// Impairment of both directions: `delay=40ms,jitter=10ms,loss=1%,reorder=1%,hold=20ms,rate=4mbit,queue=64k`.
    #[arg(long, default_value = "")]
    both: Impairment,
    /// Client → upstream; replaces --both for that direction.
    #[arg(long)]
    up: Option<Impairment>,
    /// Upstream → client; replaces --both for that direction.
    #[arg(long)]
    down: Option<Impairment>,
    /// Random seed (printed at start; default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Forget a client after this long without a packet either way.
    #[arg(long, default_value = "60s", value_parser = units::duration)]
    idle: Duration,
    /// Most clients at once.
    #[arg(long, default_value_t = 10_000)]
    max_clients: usize,
    /// Write the counters as JSON to this file every --stats-interval and at exit.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// How often to write --stats.
    #[arg(long, default_value = "1s", value_parser = units::duration)]
    stats_interval: Duration,
    /// Stop after this long (default: run until SIGINT/SIGTERM).
    #[arg(long, value_parser = units::duration)]
    duration: Option<Duration>,
}

async fn run_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut config = Config::new(args.listen, args.upstream);
    config.up = args.up.unwrap_or_else(|| args.both.clone());
    config.down = args.down.unwrap_or(args.both);
    config.seed = seed;
    config.idle = args.idle;
    config.max_clients = args.max_clients;
    let proxy = Proxy::bind(config.clone()).await?;
    let handle = proxy.handle();
    eprintln!(
        "moq-netem: {} -> {} up [{}] down [{}] seed {seed}",
        handle.local_addr(),
        config.upstream,
        config.up,
        config.down
    );
    let write_stats = |final_: bool| -> anyhow::Result<()> {
        let text = serde_json::to_string(&handle.snapshot())?;
        if let Some(path) = &args.stats {
            // Write then rename, so a reader never sees half a file.
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, format!("{text}\n"))
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        }
        if final_ {
            println!("{text}");
        }
        Ok(())
    };
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        match args.duration {
            Some(d) => tokio::select! {
                () = tokio::time::sleep(d) => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
            None => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
        }
        anyhow::Ok(())
    };
    let mut ticks = tokio::time::interval(args.stats_interval.max(Duration::from_millis(10)));
    let running = proxy.run();
    tokio::pin!(running, stop);
    loop {
        tokio::select! {
            result = &mut running => {
                write_stats(true)?;
                return result.context("proxy");
            }
            result = &mut stop => {
                result?;
                break;
            }
            _ = ticks.tick() => write_stats(false)?,
        }
    }
    write_stats(true)
}

async fn main_async(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Proxy(args) => run_proxy(*args).await,
        Cmd::Echo { bind } => {
            let socket = tokio::net::UdpSocket::bind(bind)
                .await
                .with_context(|| format!("binding {bind}"))?;
            eprintln!("moq-netem: echo on {}", socket.local_addr()?);
            probe::echo(socket).await.context("echo")
        }
        Cmd::Probe {
            target,
            rate,
            size,
            duration,
            wait,
        } => {
            let report = probe::probe(&ProbeConfig {
                target,
                rate,
                size,
                duration,
                wait,
            })
            .await
            .context("probe")?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("moq-netem: {e}");
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(main_async(cli)) {
        eprintln!("moq-netem: {err:#}");
        std::process::exit(1);
    }
}
