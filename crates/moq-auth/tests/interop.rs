//! Interop with the ecosystem's `moq-token` CLI (moq-token-cli 0.5.48): its
//! keys and tokens verify here, and ours verify there.
//!
//! The binary is looked up at `$MOQ_TOKEN_BIN`, then
//! `~/.cache/moq-upstream/bin/moq-token`. Without it the test prints a notice
//! and passes, unless `MOQ_REQUIRE_INTEROP=1`, which makes it fail instead.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use moq_auth::{Algorithm, Claims, Key, KeyId, KeySet, unix_seconds};

fn binary() -> Option<PathBuf> {
    let path = match std::env::var_os("MOQ_TOKEN_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/moq-upstream/bin/moq-token"),
    };
    path.is_file().then_some(path)
}

struct Upstream(PathBuf);

impl Upstream {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.0).args(args).output().expect("run moq-token")
    }

    fn generate(&self, alg: Algorithm, out: &Path, public: Option<&Path>) {
        let mut args = vec![
            "generate",
            "--algorithm",
            alg.as_str(),
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(public) = public {
            args.extend(["--public", public.to_str().unwrap()]);
        }
        let output = self.run(&args);
        assert!(
            output.status.success(),
            "moq-token generate {alg}: {}",
            stderr(&output)
        );
    }

    fn sign(&self, key: &Path, claims: &Claims) -> String {
        let exp = claims.exp.unwrap().to_string();
        let iat = claims.iat.unwrap().to_string();
        let mut args = vec!["sign", "--key", key.to_str().unwrap(), "--root", &claims.root];
        for p in &claims.put {
            args.extend(["--publish", p]);
        }
        for s in &claims.get {
            args.extend(["--subscribe", s]);
        }
        args.extend(["--expires", &exp, "--issued", &iat]);
        let output = self.run(&args);
        assert!(output.status.success(), "moq-token sign: {}", stderr(&output));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Whether `moq-token verify` accepts the token; its stdout when it does.
    fn verify(&self, key: &Path, token: &str, dir: &Path) -> Result<String, String> {
        let file = dir.join("token.jwt");
        std::fs::write(&file, token).unwrap();
        let output = self.run(&[
            "verify",
            "--key",
            key.to_str().unwrap(),
            "--in",
            file.to_str().unwrap(),
        ]);
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(stderr(&output))
        }
    }
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn claims() -> Claims {
    let now = unix_seconds(SystemTime::now());
    Claims {
        root: "interop".into(),
        put: vec!["room".into(), "cams/a".into()],
        get: vec!["".into()],
        exp: Some(now + 3600),
        iat: Some(now),
        ..Claims::default()
    }
}

#[test]
fn moq_token_cli_interop() {
    let Some(bin) = binary() else {
        let msg = "moq-token not found (set MOQ_TOKEN_BIN or install moq-token-cli 0.5.48 into \
                   ~/.cache/moq-upstream); interop test SKIPPED";
        assert!(std::env::var_os("MOQ_REQUIRE_INTEROP").is_none(), "{msg}");
        eprintln!("NOTICE: {msg}");
        return;
    };
    eprintln!("interop against {}", bin.display());
    let up = Upstream(bin);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = claims();

    for alg in [
        Algorithm::HS256,
        Algorithm::ES256,
        Algorithm::RS256,
        Algorithm::EdDSA,
    ] {
        // Their key, their token, our verification (private file and, for
        // asymmetric keys, the public file they wrote).
        let their_key = d.join(format!("their-{alg}.jwk"));
        let their_pub = d.join(format!("their-{alg}.pub.jwk"));
        let asymmetric = !alg.is_symmetric();
        up.generate(alg, &their_key, asymmetric.then_some(their_pub.as_path()));
        let their_verifier = if asymmetric { &their_pub } else { &their_key };
        let token = up.sign(&their_key, &c);
        let ours = Key::from_file(their_verifier).unwrap_or_else(|e| panic!("{alg}: load their key: {e}"));
        assert_eq!(
            ours.verify(&token).unwrap_or_else(|e| panic!("{alg}: {e}")),
            c,
            "{alg}"
        );
        // Their tokens carry their random kid, which a key directory resolves.
        let kid = ours.kid().expect("moq-token assigns a kid").clone();
        let keys = d.join(format!("dir-{alg}"));
        std::fs::create_dir(&keys).unwrap();
        std::fs::copy(their_verifier, keys.join(format!("{kid}.jwk"))).unwrap();
        assert_eq!(
            KeySet::dir(&keys).unwrap().verify(&token).unwrap(),
            c,
            "{alg} via key_dir"
        );

        // Their key, our token, their verification.
        let signer = Key::from_file(&their_key).unwrap();
        let token = signer.sign(&c).unwrap();
        let shown = up
            .verify(their_verifier, &token, d)
            .unwrap_or_else(|e| panic!("{alg}: moq-token refused our token: {e}"));
        assert!(shown.contains("cams/a"), "{alg}: {shown}");

        // Our key, their token, our verification.
        let our_key = d.join(format!("our-{alg}.jwk"));
        let our_pub = d.join(format!("our-{alg}.pub.jwk"));
        let key = Key::generate(alg, Some(KeyId::new(&format!("ours-{alg}")).unwrap())).unwrap();
        key.write_file(&our_key).unwrap();
        let our_verifier = if asymmetric {
            key.to_public().unwrap().write_file(&our_pub).unwrap();
            &our_pub
        } else {
            &our_key
        };
        let token = up.sign(&our_key, &c);
        assert_eq!(
            Key::from_file(our_verifier).unwrap().verify(&token).unwrap(),
            c,
            "{alg}"
        );

        // Our key, our token, their verification.
        let token = key.sign(&c).unwrap();
        let shown = up
            .verify(our_verifier, &token, d)
            .unwrap_or_else(|e| panic!("{alg}: moq-token refused our key/token: {e}"));
        assert!(shown.contains("interop"), "{alg}: {shown}");

        // Their verifier really checks: a token from another key is refused.
        let stranger = Key::generate(alg, None).unwrap().sign(&c).unwrap();
        assert!(
            up.verify(our_verifier, &stranger, d).is_err(),
            "{alg}: moq-token accepted a stranger"
        );
        eprintln!("{alg}: their->ours and ours->theirs OK");
    }
}
