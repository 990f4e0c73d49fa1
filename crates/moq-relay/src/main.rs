//! `moq-relay`: the relay server. With no arguments it runs a development relay on
//! `[::]:4443` (self-signed certificate, anonymous access) and prints how to use it.

use std::process::ExitCode;

use moq_relay::{
    Relay,
    config::{Config, ConfigError, LogFormat},
};

fn main() -> ExitCode {
    let config = match Config::load(std::env::args_os()) {
        Ok(config) => config,
        // Help, version and usage errors: clap prints them and exits 0 or 2.
        Err(ConfigError::Usage(err)) => err.exit(),
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &config.warnings {
        eprintln!("warning: config {}: {warning}", config.origin());
    }
    if let Err(err) = config.validate() {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    if config.check {
        println!("{}", config.summary());
        return ExitCode::SUCCESS;
    }

    init_logging(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let level = config.log.level.clone().unwrap_or_else(|| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if matches!(config.log.format, Some(LogFormat::Json)) {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let development = config.development;
    let relay = Relay::bind(config).await?;
    let quic = relay.quic_addr()?;
    let versions: Vec<&str> = relay.quic.versions().iter().map(|v| v.alpn()).collect();
    tracing::info!(%quic, versions = %versions.join(","), "listening for QUIC and WebTransport");
    if let Some(web) = relay.web_addr() {
        tracing::info!(%web, "listening for HTTP");
    }
    if development {
        let port = quic.port();
        let fingerprint = relay.quic.fingerprints().first().cloned().unwrap_or_default();
        println!("moq-relay: development relay (self-signed certificate, anonymous access)");
        println!(
            "  QUIC + WebTransport  udp [::]:{port}   versions {}",
            versions.join(", ")
        );
        println!(
            "  HTTP                 tcp [::]:{port}   /certificate.sha256 /announced /fetch/<broadcast>/<track>"
        );
        println!("  certificate sha256   {fingerprint}");
        println!();
        println!("  publish a clock:  moq publish clock http://localhost:{port}/anon --broadcast clock");
        println!("  watch it:         moq clock http://localhost:{port}/anon --broadcast clock");
        println!("  list broadcasts:  moq announced http://localhost:{port}/anon");
    }
    tokio::select! {
        result = relay.run() => result,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; shutting down");
            Ok(())
        }
    }
}
