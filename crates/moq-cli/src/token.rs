//! `moq token`: generate keys, sign tokens, verify tokens (compatible with the
//! ecosystem's `moq-token` CLI). Never prints a key or token unless asked to
//! write one to stdout.

use std::{
    io::Read,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Context, bail};
use moq_auth::{Algorithm, Claims, Key, KeyId, KeySet, Scope, unix_seconds};

/// Arguments of `moq token`.
#[derive(clap::Args, Debug)]
pub(crate) struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// The `moq token` subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Generate a signing key (a JWK, written as base64url(JSON), mode 0600).
    Generate(GenerateArgs),
    /// Sign a token with a key and print it.
    Sign(SignArgs),
    /// Verify a token and print its claims as JSON; exits non-zero with the
    /// reason if it is refused.
    Verify(VerifyArgs),
}

/// Arguments of `moq token generate`.
#[derive(clap::Args, Debug)]
pub(crate) struct GenerateArgs {
    /// EdDSA (the default), ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, or the
    /// shared-secret HS256, HS384, HS512. An asymmetric key lets relays hold only the
    /// public half: a relay that leaks it cannot mint tokens.
    #[arg(long, default_value = "EdDSA", value_name = "ALG")]
    pub algorithm: Algorithm,
    /// Key id (A-Z, a-z, 0-9, '-', '_'); a random one if not given. A key
    /// directory holds each key as `{id}.jwk`.
    #[arg(long, value_name = "KID")]
    pub id: Option<String>,
    /// Where to write the private key (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Also write the public key here, for relays (not for HS* keys; `-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub public: Option<PathBuf>,
    /// Replace an existing key file.
    #[arg(long)]
    pub force: bool,
    /// Limit the key to tokens under this root (with --publish/--subscribe).
    #[arg(long, value_name = "ROOT", default_value = "")]
    pub root: String,
    /// Limit the key to granting publish under these prefixes (repeatable).
    #[arg(long, value_name = "PREFIX")]
    pub publish: Vec<String>,
    /// Limit the key to granting subscribe under these prefixes (repeatable).
    #[arg(long, value_name = "PREFIX")]
    pub subscribe: Vec<String>,
}

/// Arguments of `moq token sign`.
#[derive(clap::Args, Debug)]
pub(crate) struct SignArgs {
    /// The private key file (JSON or base64url JSON).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The path `--publish` and `--subscribe` are relative to.
    #[arg(long, default_value = "", value_name = "ROOT")]
    pub root: String,
    /// A prefix the holder may publish under; `""` is everything under the root (repeatable).
    #[arg(long, value_name = "PREFIX")]
    pub publish: Vec<String>,
    /// A prefix the holder may subscribe to; `""` is everything under the root (repeatable).
    #[arg(long, value_name = "PREFIX")]
    pub subscribe: Vec<String>,
    /// Expiry: a duration from now (`1h`, `30m`, `15s`, `7d`, `1h30m`) or Unix seconds.
    /// Required, unless --no-expiry says the token is meant to last forever.
    #[arg(long, value_name = "DURATION|UNIX")]
    pub expires: Option<String>,
    /// Mint a token that never expires (only revoking its key ends it).
    #[arg(long, conflicts_with = "expires")]
    pub no_expiry: bool,
    /// Issued-at time in Unix seconds (default: now).
    #[arg(long, value_name = "UNIX")]
    pub issued: Option<u64>,
}

/// Arguments of `moq token verify`.
#[derive(clap::Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The key file (public or private), or a key directory of `{kid}.jwk` files.
    #[arg(long, value_name = "FILE|DIR")]
    pub key: PathBuf,
    /// Read the token from this file (`-` for stdin).
    #[arg(long = "in", value_name = "FILE", default_value = "-")]
    pub input: PathBuf,
}

/// Run `moq token ...`.
pub(crate) fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Generate(args) => generate(&args),
        TokenCommand::Sign(args) => {
            println!("{}", sign(&args, SystemTime::now())?);
            Ok(())
        }
        TokenCommand::Verify(args) => {
            let token = read_token(&args.input)?;
            println!("{}", verify(&args.key, &token)?.to_json());
            Ok(())
        }
    }
}

fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

fn write_key(key: &Key, path: &Path, force: bool) -> anyhow::Result<()> {
    if is_stdout(path) {
        println!("{}", key.to_base64url());
        return Ok(());
    }
    if path.exists() && !force {
        bail!(
            "{} already exists; pass --force to replace it (tokens signed with the old key will stop verifying)",
            path.display()
        );
    }
    key.write_file(path)?;
    Ok(())
}

/// `moq token generate`.
pub(crate) fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let kid = match &args.id {
        Some(id) => KeyId::new(id).with_context(|| format!("--id '{id}'"))?,
        None => KeyId::random()?,
    };
    if args.public.is_some() && args.algorithm.is_symmetric() {
        bail!(
            "--public: {} keys are a shared secret with no public half; give relays the key file itself",
            args.algorithm
        );
    }
    let scope = (!args.publish.is_empty() || !args.subscribe.is_empty()).then(|| Scope {
        root: args.root.clone(),
        put: args.publish.clone(),
        get: args.subscribe.clone(),
    });
    if scope.is_none() && !args.root.is_empty() {
        bail!("--root limits a key only together with --publish or --subscribe");
    }
    let key = Key::generate(args.algorithm, Some(kid.clone()))?.with_scope(scope);
    write_key(&key, &args.out, args.force)?;
    if let Some(public) = &args.public {
        write_key(&key.to_public()?, public, args.force)?;
    }
    if !is_stdout(&args.out) {
        eprintln!("wrote {} key '{kid}' to {}", args.algorithm, args.out.display());
    }
    Ok(())
}

/// Parse `--expires`: Unix seconds if it is all digits, else a duration from `now`.
pub(crate) fn parse_expires(s: &str, now: SystemTime) -> anyhow::Result<u64> {
    let now = unix_seconds(now);
    let at = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().with_context(|| format!("--expires '{s}'"))?
    } else {
        let duration = moq_units::parse_duration(s).map_err(|e| anyhow::anyhow!("--expires {e}"))?;
        now.checked_add(duration.as_secs())
            .context("--expires is too far away")?
    };
    if at <= now {
        bail!("--expires {s}: that is not in the future (now is {now})");
    }
    Ok(at)
}

/// `moq token sign`: the signed token.
pub(crate) fn sign(args: &SignArgs, now: SystemTime) -> anyhow::Result<String> {
    if args.publish.is_empty() && args.subscribe.is_empty() {
        bail!(
            "the token would grant nothing: give --publish and/or --subscribe (\"\" means everything under --root)"
        );
    }
    if args.expires.is_none() && !args.no_expiry {
        bail!("give --expires (e.g. --expires 1h), or --no-expiry for a token that never expires");
    }
    let key = Key::from_file(&args.key)?;
    let claims = Claims {
        root: args.root.clone(),
        put: args.publish.clone(),
        get: args.subscribe.clone(),
        exp: args
            .expires
            .as_deref()
            .map(|e| parse_expires(e, now))
            .transpose()?,
        iat: Some(args.issued.unwrap_or_else(|| unix_seconds(now))),
        nbf: None,
    };
    Ok(key.sign(&claims)?)
}

fn read_token(input: &Path) -> anyhow::Result<String> {
    let mut token = String::new();
    if is_stdout(input) {
        std::io::stdin()
            .read_to_string(&mut token)
            .context("reading the token from stdin")?;
    } else {
        token = std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    }
    Ok(token.trim().to_owned())
}

/// `moq token verify`: the verified claims, or the refusal with its reason.
pub(crate) fn verify(key: &Path, token: &str) -> anyhow::Result<Claims> {
    let keys = if key.is_dir() {
        KeySet::dir(key)?
    } else {
        KeySet::single(Key::from_file(key)?)?
    };
    keys.verify(token)
        .map_err(|err| anyhow::anyhow!("token refused ({}): {err}", err.reason()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(parse_expires("1h", now).unwrap(), 4_600);
        assert_eq!(parse_expires("2000", now).unwrap(), 2_000);
        assert_eq!(parse_expires("1h30m", now).unwrap(), 6_400);
        assert_eq!(parse_expires("7d", now).unwrap(), 605_800);
        for bad in ["", "h", "1x", "-1h", "99999999999999999999w"] {
            assert!(parse_expires(bad, now).is_err(), "{bad}");
        }
        assert!(parse_expires("1000", now).is_err());
        assert!(parse_expires("0s", now).is_err());
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("moq-token-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn generate_sign_verify() {
        let dir = scratch("gsv");
        let (out, public) = (dir.join("k.jwk"), dir.join("k.pub.jwk"));
        let gen_args = GenerateArgs {
            algorithm: Algorithm::ES256,
            id: Some("k1".into()),
            out: out.clone(),
            public: Some(public.clone()),
            force: false,
            root: String::new(),
            publish: vec![],
            subscribe: vec![],
        };
        generate(&gen_args).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(generate(&gen_args).is_err(), "refuses to overwrite");

        let sign_args = SignArgs {
            key: out.clone(),
            root: "r".into(),
            publish: vec!["room".into()],
            subscribe: vec![String::new()],
            expires: Some("1h".into()),
            no_expiry: false,
            issued: None,
        };
        let token = sign(&sign_args, SystemTime::now()).unwrap();
        let claims = verify(&public, &token).unwrap();
        assert_eq!(
            (claims.root.as_str(), claims.put.as_slice()),
            ("r", &["room".to_owned()][..])
        );
        assert!(claims.exp.is_some() && claims.iat.is_some());
        // A key directory resolves the kid.
        std::fs::create_dir(dir.join("keys")).unwrap();
        std::fs::copy(&public, dir.join("keys/k1.jwk")).unwrap();
        assert!(verify(&dir.join("keys"), &token).is_ok());

        // Refusals carry the reason and never the token.
        let err = verify(&public, &format!("{token}x")).unwrap_err().to_string();
        assert!(
            err.contains("malformed") || err.contains("bad_signature"),
            "{err}"
        );
        assert!(!err.contains(&token));
        let expired = SignArgs {
            expires: Some("1h".into()),
            ..sign_args
        };
        let old = sign(&expired, SystemTime::now() - Duration::from_secs(7200)).unwrap();
        assert!(
            verify(&public, &old)
                .unwrap_err()
                .to_string()
                .contains("(expired)")
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A token that never expires is minted only when asked for in so many words.
    #[test]
    fn sign_needs_an_expiry_or_an_explicit_no_expiry() {
        let dir = scratch("expiry");
        let key = dir.join("k.jwk");
        generate(&GenerateArgs {
            algorithm: Algorithm::EdDSA,
            id: Some("k".into()),
            out: key.clone(),
            public: None,
            force: false,
            root: String::new(),
            publish: vec![],
            subscribe: vec![],
        })
        .unwrap();
        let args = SignArgs {
            key: key.clone(),
            root: String::new(),
            publish: vec![],
            subscribe: vec![String::new()],
            expires: None,
            no_expiry: false,
            issued: None,
        };
        let err = sign(&args, SystemTime::now()).unwrap_err().to_string();
        assert!(err.contains("--expires") && err.contains("--no-expiry"), "{err}");
        let forever = SignArgs {
            no_expiry: true,
            ..args
        };
        let token = sign(&forever, SystemTime::now()).unwrap();
        assert_eq!(verify(&key, &token).unwrap().exp, None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
