//! The harness on a real kernel path: two network namespaces joined by a veth pair, a `tbf`
//! bottleneck, `nftables` random loss and the proxy's delay, each measured with the probe.
//!
//! Skipped, with the reason printed, where namespaces are not available (not root, no `ip`,
//! `tc` or `nft`, or a container that forbids them). Every namespace is removed when the test
//! ends, also when it fails.

#![allow(clippy::unwrap_used)] // Test code.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use moq_netem::lab::{End, Lab, LabError};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_moq-netem");

/// A lab with namespaces `a` and `b` joined by one veth pair, and an echo listening in `b`;
/// `None` (after printing why) where the machine cannot do it.
fn setup(test: &str) -> Option<(Lab, End, End)> {
    let unavailable = |e: LabError| {
        if e.is_unavailable() {
            eprintln!("{test}: skipped: {e}");
            None
        } else {
            panic!("{test}: {e}")
        }
    };
    let mut lab = match Lab::new().and_then(|l| Lab::require_impairments().map(|()| l)) {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let a = match lab.namespace("a") {
        Ok(a) => a,
        Err(e) => return unavailable(e),
    };
    let b = lab.namespace("b").unwrap();
    let (ea, eb) = lab.veth(&a, "10.99.0.1/24", &b, "10.99.0.2/24").unwrap();
    let mut echo = lab.command(&b, BIN);
    echo.args(["echo", "--bind", "10.99.0.2:9000"])
        .stderr(Stdio::piped());
    let index = lab.spawn(echo).unwrap();
    wait_for_line(&mut lab, index, "echo on");
    Some((lab, ea, eb))
}

/// Block until the child prints a line containing `needle` on stderr (it prints it once bound).
fn wait_for_line(lab: &mut Lab, index: usize, needle: &str) {
    let child = lab.child(index).unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains(needle) => return,
            Some(Ok(_)) => continue,
            other => panic!("the process ended before printing '{needle}': {other:?}"),
        }
    }
}

/// Run `moq-netem probe` inside `ns` and parse its report.
fn probe(lab: &Lab, ns: &str, target: &str, rate: &str, size: u32, duration: &str) -> Value {
    let out = lab
        .command(ns, BIN)
        .args([
            "probe",
            "--target",
            target,
            "--rate",
            rate,
            "--size",
            &size.to_string(),
        ])
        .args(["--duration", duration, "--wait", "500ms"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Apply an impairment; `false` (after printing why) where this kernel cannot.
fn apply(test: &str, result: Result<(), LabError>) -> bool {
    match result {
        Ok(()) => true,
        Err(e) if e.is_unavailable() => {
            eprintln!("{test}: skipped: {e}");
            false
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for key in path {
        v = &v[key];
    }
    v.as_f64().unwrap_or_else(|| panic!("{path:?} missing in {v}"))
}

#[test]
fn tbf_bottleneck_delivers_its_rate() {
    let Some((lab, a, _b)) = setup("tbf") else { return };
    let started = Instant::now();
    // 4 Mbit/s, a 16 KB bucket, 30 KB of queue; offered 8 Mbit/s of 1200-byte datagrams.
    if !apply("tbf", lab.tbf(&a, 4_000_000, 16_000, 30_000)) {
        return;
    }
    let r = probe(&lab, &a.ns, "10.99.0.2:9000", "8mbit", 1200, "3s");
    eprintln!("tbf 4 Mbit/s: {r}");
    // tbf counts whole frames: 1200 bytes of payload travel in 1242 bytes (Ethernet, IP, UDP).
    let expected = 4e6 * 1200.0 / 1242.0;
    let got = f(&r, &["acked_bps"]);
    assert!(
        (got - expected).abs() / expected < 0.10,
        "delivered {got:.0} bit/s, expected ~{expected:.0}: {r}"
    );
    let loss = f(&r, &["loss"]);
    assert!(
        (0.4..0.6).contains(&loss),
        "about half the offered load is dropped: {r}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn nft_random_loss_matches_the_configured_fraction() {
    let Some((lab, a, _b)) = setup("nft") else { return };
    if !apply("nft", lab.loss(&a, 0.10)) {
        return;
    }
    // 2000 datagrams at 500 per second: well below any bottleneck, and slow enough that a busy
    // machine's socket buffers do not add losses of their own.
    let r = probe(&lab, &a.ns, "10.99.0.2:9000", "1mbit", 250, "4s");
    eprintln!("nft 10%: {r}");
    let sent = f(&r, &["sent"]);
    let missed = sent - f(&r, &["acked"]);
    assert_eq!(sent, 2000.0);
    let dropped = lab.loss_count(&a).unwrap() as f64;
    // 10% of 2000 is 200, σ ≈ 13.4.
    assert!(
        (150.0..250.0).contains(&dropped),
        "nft dropped {dropped} of {sent}: {r}"
    );
    // Every drop is a datagram the probe missed (the rule may also have taken one of the few IPv6
    // neighbour-discovery packets a new link sends), and little else went missing.
    assert!(
        missed + 3.0 >= dropped && missed <= dropped + 40.0,
        "nft dropped {dropped}, the probe missed {missed}: {r}"
    );
}

#[test]
fn proxy_in_a_namespace_adds_its_delay_and_loss() {
    let Some((mut lab, a, _b)) = setup("proxy") else {
        return;
    };
    let mut proxy = lab.command(&a.ns, BIN);
    proxy
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:7000",
            "--upstream",
            "10.99.0.2:9000",
        ])
        .args([
            "--both",
            "delay=20ms",
            "--up",
            "delay=20ms,loss=5%",
            "--seed",
            "7",
        ])
        .stderr(Stdio::piped());
    let index = lab.spawn(proxy).unwrap();
    wait_for_line(&mut lab, index, "->");
    let r = probe(&lab, &a.ns, "127.0.0.1:7000", "2mbit", 500, "2s");
    eprintln!("proxy 20 ms + 20 ms, 5% up: {r}");
    let rtt_min = f(&r, &["rtt_ms", "min"]);
    let rtt_p50 = f(&r, &["rtt_ms", "p50"]);
    assert!(rtt_min >= 40.0, "20 ms each way: {r}");
    assert!(rtt_p50 < 60.0, "nothing else should add much: {r}");
    let loss = f(&r, &["loss"]);
    assert!((0.025..0.075).contains(&loss), "5% up, 0% down: {r}");
}
