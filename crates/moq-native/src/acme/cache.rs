//! The ACME cache directory: the account key and the issued certificate, kept so a
//! restart serves at once and orders nothing.
//!
//! Layout (the directory is mode 0700, every file 0600, each written to a temporary
//! file and renamed into place, so a crash never leaves half a file):
//!
//! ```text
//! account-<directory host>-<hash>.json    the account URL and its private key (PKCS#8)
//! <first domain>-<hash>.pem               the certificate chain, then its private key
//! ```
//!
//! The account file is per directory URL (staging and production are different CAs);
//! the certificate file is per directory and set of domains, so changing either in the
//! configuration starts afresh instead of serving a certificate for other names.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use super::Error;

/// The cache directory.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Open `dir`, creating it (mode 0700) if needed and tightening its mode to 0700.
    pub(crate) fn open(dir: &Path) -> Result<Self, Error> {
        let fail = |source| Error::Cache {
            path: dir.to_path_buf(),
            source,
        };
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(fail)?;
        let metadata = fs::metadata(dir).map_err(fail)?;
        if !metadata.is_dir() {
            return Err(fail(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if metadata.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(fail)?;
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the account for `directory` (the ACME directory URL) is kept.
    pub(crate) fn account(&self, directory: &str) -> PathBuf {
        let host = url::Url::parse(directory)
            .ok()
            .and_then(|url| url.host_str().map(safe))
            .unwrap_or_default();
        self.dir
            .join(format!("account-{host}-{}.json", short_hash(&[directory])))
    }

    /// Where the certificate for `domains` from `directory` is kept.
    pub(crate) fn certificate(&self, directory: &str, domains: &[String]) -> PathBuf {
        let mut sorted: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        sorted.sort();
        sorted.dedup();
        let mut parts = vec![directory];
        parts.extend(sorted.iter().map(String::as_str));
        let first = domains.first().map(|d| safe(d)).unwrap_or_default();
        self.dir.join(format!("{first}-{}.pem", short_hash(&parts)))
    }

    /// The contents of `path`, or `None` if it does not exist.
    pub(crate) fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, Error> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Cache {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Replace `path` with `bytes` (mode 0600) atomically: a temporary file beside it,
    /// synced, then renamed over it.
    pub(crate) fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let fail = |source| Error::Cache {
            path: path.to_path_buf(),
            source,
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| fail(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
        let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut options = fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temporary, path)?;
            // The rename is durable once the directory is synced.
            if let Ok(dir) = fs::File::open(&self.dir) {
                let _ = dir.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        result.map_err(fail)
    }

    /// Remove `path` if it exists.
    pub(crate) fn remove(&self, path: &Path) -> Result<(), Error> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Cache {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// Whether `dir` could serve as the cache: it exists as a writable directory, or could be
/// created. Writes and removes a probe file; creates nothing else. For `--check`.
pub fn probe(dir: &Path) -> Result<(), String> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".moq-relay-acme-probe.{}", std::process::id()));
    fs::write(&probe, b"")
        .and_then(|()| fs::remove_file(&probe))
        .map_err(|err| {
            let what = if existing == dir {
                "cannot write in it".to_string()
            } else {
                format!(
                    "it does not exist and cannot be created in {}",
                    existing.display()
                )
            };
            format!("{what}: {err}")
        })
}

/// Keep letters, digits, `-` and `.` of a host name for a file name.
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// 8 bytes of SHA-256 over `parts` (each followed by a newline), as hex.
fn short_hash(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update(b"\n");
    }
    hex::encode(hash.finalize().get(..8).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_private_and_replaced_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/acme");
        let cache = Cache::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let path = cache.certificate("https://ca.example/dir", &["relay.example.com".into()]);
        assert!(
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("relay.example.com-"),
            "{path:?}"
        );
        assert_eq!(cache.read(&path).unwrap(), None);
        cache.write(&path, b"one").unwrap();
        cache.write(&path, b"two").unwrap();
        assert_eq!(cache.read(&path).unwrap().unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        cache.remove(&path).unwrap();
        cache.remove(&path).unwrap();
        assert_eq!(cache.read(&path).unwrap(), None);
    }

    #[test]
    fn a_loose_directory_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        Cache::open(tmp.path()).unwrap();
        assert_eq!(mode(tmp.path()), 0o700);
    }

    #[test]
    fn names_depend_on_the_directory_and_the_set_of_domains() {
        let cache = Cache {
            dir: PathBuf::from("/c"),
        };
        let a = ["a.example".to_string(), "b.example".to_string()];
        let b = ["B.example".to_string(), "a.example".to_string()];
        let production = "https://acme-v02.api.letsencrypt.org/directory";
        let staging = "https://acme-staging-v02.api.letsencrypt.org/directory";
        let suffix = format!("-{}.pem", short_hash(&[production, "a.example", "b.example"]));
        let path = cache.certificate(production, &a);
        assert_eq!(path, PathBuf::from(format!("/c/a.example{suffix}")));
        // Order and case of the names do not matter; the set and the CA do.
        assert!(
            cache
                .certificate(production, &b)
                .to_str()
                .unwrap()
                .ends_with(&suffix)
        );
        assert_ne!(cache.certificate(production, &a), cache.certificate(staging, &a));
        assert_ne!(
            cache.certificate(production, &a),
            cache.certificate(production, &a[..1])
        );
        assert_ne!(cache.account(production), cache.account(staging));
        assert!(
            cache
                .account(production)
                .to_str()
                .unwrap()
                .starts_with("/c/account-acme-v02.api.letsencrypt.org-")
        );
        assert_eq!(safe("../x/y"), "_x_y");
    }

    #[test]
    fn unusable_places_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(Cache::open(&file).is_err());
        assert!(Cache::open(&file.join("below")).is_err());
        assert!(probe(&file).unwrap_err().contains("not a directory"));
        assert!(probe(&tmp.path().join("new/deeper")).is_ok());
        assert!(probe(tmp.path()).is_ok());
        // Nothing was created by probing.
        assert!(!tmp.path().join("new").exists());
        let cache = Cache::open(tmp.path()).unwrap();
        let err = cache.read(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("ACME cache"), "{err}");
        assert!(cache.write(&tmp.path().join("missing/x"), b"").is_err());
    }

    #[test]
    fn a_read_only_directory_fails_the_probe() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o500)).unwrap();
        // Root ignores permission bits; the probe then (correctly) succeeds.
        if fs::write(tmp.path().join("x"), b"").is_ok() {
            return;
        }
        assert!(probe(tmp.path()).unwrap_err().contains("cannot write in it"));
        assert!(
            probe(&tmp.path().join("sub"))
                .unwrap_err()
                .contains("cannot be created")
        );
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
    }
}
