//! `moq-relay`: the relay server. Until the single-relay issue lands this
//! binary only reports what it will speak.

fn main() {
    let versions: Vec<&str> = moq_proto::Version::PREFERRED.iter().map(|v| v.alpn()).collect();
    eprintln!(
        "moq-relay: not yet implemented: see issue list (codec ready for {})",
        versions.join(", ")
    );
    std::process::exit(2);
}
