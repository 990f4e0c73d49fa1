//! moq-quic-bulk, end to end on loopback: the sender serves, the receiver measures.

use std::{
    net::UdpSocket,
    process::{Command, Stdio},
};

#[test]
fn the_bulk_pair_moves_data_and_reports_a_rate() {
    // A free UDP port for the sender.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sender = Command::new(env!("CARGO_BIN_EXE_moq-quic-bulk"))
        .args(["send", "--bind", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = None;
    // The sender may take a moment to bind: retry the receiver a few times.
    for _ in 0..20 {
        let run = Command::new(env!("CARGO_BIN_EXE_moq-quic-bulk"))
            .args([
                "recv",
                "--connect",
                &format!("moql://127.0.0.1:{port}"),
                "--connections",
                "2",
                "--ramp",
                "200ms",
                "--duration",
                "1s",
            ])
            .output()
            .unwrap();
        if run.status.success() {
            out = Some(run);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = sender.kill();
    let _ = sender.wait();
    let out = out.expect("the receiver never connected");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["connections"], 2);
    assert!(report["bytes"].as_u64().unwrap() > 1_000_000, "{report}");
    assert!(report["gbit_per_s"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn the_receiver_refuses_a_url_that_is_not_quic() {
    let out = Command::new(env!("CARGO_BIN_EXE_moq-quic-bulk"))
        .args(["recv", "--connect", "https://127.0.0.1:9/", "--duration", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("use moql:// or moqt://"), "{stderr}");
}
