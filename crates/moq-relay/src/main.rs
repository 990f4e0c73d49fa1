//! `moq-relay`: the relay server. With no arguments it runs a development relay on
//! `[::]:4443` (self-signed certificate, anonymous access) and prints how to use it.

use std::{process::ExitCode, time::Duration};

use tokio::signal::unix::{SignalKind, signal};

use moq_relay::{
    Handle, Relay,
    config::{Config, ConfigError, LogFormat},
    systemd::{self, NotifyState},
};

/// How long Ctrl-C waits for sessions to leave before closing them.
const INTERRUPT_DRAIN: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let config = match Config::load(std::env::args_os()) {
        Ok(config) => config,
        // Help, version and usage errors: clap prints them and exits 0 or 2.
        Err(ConfigError::Usage(err)) => err.exit(),
        // The log format is not known yet: plain text.
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let json = matches!(config.log.format, Some(LogFormat::Json));
    // `--check` prints for a person (or a script) on stdout/stderr, never as JSON lines.
    if !config.check {
        init_logging(&config);
    }
    let as_json = json && !config.check;
    let say = move |level: tracing::Level, message: String| match (as_json, level) {
        (true, tracing::Level::ERROR) => tracing::error!("{message}"),
        (true, _) => tracing::warn!("{message}"),
        (false, tracing::Level::ERROR) => eprintln!("error: {message}"),
        (false, _) => eprintln!("warning: {message}"),
    };
    let advice = config.advice().into_iter().chain(config.safety_warnings());
    for warning in config.warnings.iter().cloned().chain(advice) {
        say(
            tracing::Level::WARN,
            format!("config {}: {warning}", config.origin()),
        );
    }
    // `--check` also opens every file the relay would open, and reports every problem.
    let files = if config.check {
        config.file_problems()
    } else {
        Vec::new()
    };
    let invalid = |problems| ConfigError::Invalid {
        origin: config.origin(),
        problems,
    };
    let problem = match config.validate() {
        Ok(()) if files.is_empty() => None,
        Ok(()) => Some(invalid(files)),
        Err(ConfigError::Invalid { mut problems, .. }) => {
            problems.extend(files);
            Some(invalid(problems))
        }
        Err(err) => Some(err),
    };
    if let Some(problem) = problem {
        say(tracing::Level::ERROR, problem.to_string());
        return ExitCode::FAILURE;
    }
    if config.check {
        println!("{}", config.summary());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            say(
                tracing::Level::ERROR,
                format!("cannot start the async runtime: {err}"),
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            say(tracing::Level::ERROR, describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause only once: our errors often say
/// their cause already (`cannot bind UDP [::]:443: the port is already in use`).
fn describe(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

fn init_logging(config: &Config) {
    // A plain level also quiets a dependency that warns on every normal session end
    // (web-transport-quinn's "failed to read capsule"); RUST_LOG and filters are kept.
    let level = match config.log.level.clone() {
        Some(level) if level.contains(['=', ',']) => level,
        Some(level) => format!("{level},web_transport_quinn=error"),
        None => "info,web_transport_quinn=error".to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colour only for a person at a terminal: files and journald get plain text.
    let colour =
        std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if matches!(config.log.format, Some(LogFormat::Json)) {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Warn, with the fix, when the kernel caps UDP socket buffers below what a
/// busy QUIC server needs (bursts are dropped in the kernel otherwise).
fn check_udp_buffers() {
    const WANT: u64 = 7_500_000;
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let (Some(rmem), Some(wmem)) = (read("rmem_max"), read("wmem_max")) else {
        return;
    };
    if rmem < WANT || wmem < WANT {
        tracing::warn!(
            rmem_max = rmem,
            wmem_max = wmem,
            "UDP socket buffers are small for a relay; run: sysctl -w net.core.rmem_max={WANT} net.core.wmem_max={WANT} \
             (and persist it in /etc/sysctl.d/)"
        );
    }
}

/// The banner of the development relay: where it listens and how to use it.
fn print_development_banner(relay: &Relay) {
    let versions: Vec<&str> = relay.quic.versions().iter().map(|v| v.name()).collect();
    let fingerprint = relay.quic.fingerprints().first().cloned().unwrap_or_default();
    let Ok(quic) = relay.quic_addr() else { return };
    let port = quic.port();
    println!("moq-relay: development relay (self-signed certificate, anonymous access)");
    println!(
        "  QUIC + WebTransport  udp {quic}   versions {}",
        versions.join(", ")
    );
    if let Some(web) = relay.web_addr() {
        println!(
            "  HTTP + WebSocket     tcp {web}   /certificate.sha256 /announced /fetch/<broadcast>/<track>"
        );
    }
    println!("  certificate sha256   {fingerprint}");
    println!();
    println!("  publish a clock:  moq publish clock http://localhost:{port}/anon --broadcast clock");
    println!("  watch it:         moq clock http://localhost:{port}/anon --broadcast clock");
    println!("  list broadcasts:  moq announced http://localhost:{port}/anon");
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let development = config.development;
    let drain_timeout = config
        .drain_timeout
        .unwrap_or(moq_relay::config::DEFAULT_DRAIN_TIMEOUT);
    check_udp_buffers();
    let relay = Relay::bind(config).await?;
    let quic = relay.quic_addr()?;
    let versions: Vec<&str> = relay.quic.versions().iter().map(|v| v.name()).collect();
    tracing::info!(%quic, versions = %versions.join(","), "listening for QUIC and WebTransport");
    if let Some(web) = relay.web_addr() {
        tracing::info!(%web, "listening for HTTP");
    }
    if let Some(internal) = relay.internal_addr() {
        tracing::info!(%internal, "listening for ops (metrics, health, readiness)");
    }
    if development {
        print_development_banner(&relay);
    }

    let handle = relay.handle();
    let watchdog = systemd::watchdog_interval().map(|interval| tokio::spawn(systemd::watchdog(interval)));
    systemd::notify(NotifyState::Ready);
    let signals = tokio::spawn(on_signals(handle, drain_timeout));
    let result = relay.run().await;
    signals.abort();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    result
}

/// SIGHUP reloads certificates and token keys; SIGTERM drains for `drain_timeout`; Ctrl-C drains briefly.
/// Draining ends with the relay's run returning.
async fn on_signals(handle: Handle, drain_timeout: Duration) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let timeout = loop {
        tokio::select! {
            _ = hangup.recv() => {
                match handle.reload_certificates() {
                    Ok(()) => tracing::info!("SIGHUP: certificates reloaded"),
                    Err(err) => tracing::warn!(%err, "SIGHUP: certificates not reloaded; keeping the old ones"),
                }
                match handle.reload_keys() {
                    Ok(ended) => tracing::info!(ended, "SIGHUP: token keys reloaded"),
                    Err(err) => tracing::warn!(%err, "SIGHUP: token keys not reloaded; keeping the old ones"),
                }
            }
            _ = terminate.recv() => {
                tracing::info!(timeout = ?drain_timeout, "SIGTERM: draining");
                break drain_timeout;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted; shutting down");
                break INTERRUPT_DRAIN;
            }
        }
    };
    systemd::notify(NotifyState::Stopping);
    let left = handle.drain(timeout).await;
    tracing::info!(left, "drained; exiting");
    Ok(())
}
