//! The keys a relay verifies with: one key, or a directory of `{kid}.jwk`
//! files that operators rotate by adding and deleting files.

use std::{
    collections::HashMap,
    fmt,
    path::{Path as FsPath, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use crate::{Claims, Error, Key, KeyId, Result, Validation, jws};

/// Where the current time comes from; injectable so tests need no sleeps.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    /// A clock reading `now`.
    pub fn new(now: SystemTime) -> Self {
        Self(Mutex::new(now))
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }

    /// Set the clock.
    pub fn set(&self, to: SystemTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long a key read from a key directory is trusted before the file is
/// read again, so a deleted or replaced key file takes effect within it.
pub const DEFAULT_KEY_TTL: Duration = Duration::from_secs(10);

struct Cached {
    key: Arc<Key>,
    loaded: SystemTime,
}

/// How often a key directory is listed at most: a kid missing from the last listing is
/// refused without touching the disk, so a flood of made-up kids costs one listing per
/// interval, while a newly added key file is usable within it.
pub const LISTING_INTERVAL: Duration = Duration::from_secs(1);

/// The key files a directory held when it was last listed.
struct Listing {
    taken: Option<SystemTime>,
    kids: std::collections::HashSet<KeyId>,
}

enum Source {
    Single(Arc<Key>),
    Dir {
        dir: PathBuf,
        cache: Mutex<HashMap<KeyId, Cached>>,
        listing: Mutex<Listing>,
    },
}

/// The verification keys of a relay, with the clock and [`Validation`]
/// used to check tokens.
///
/// - [`KeySet::single`] (`[auth] key`): tokens need no `kid`; one naming a
///   `kid` other than the key's is refused.
/// - [`KeySet::dir`] (`[auth] key_dir`): a token's `kid` selects
///   `{dir}/{kid}.jwk`. The directory is listed at most once per
///   [`LISTING_INTERVAL`]: a kid not in the last listing is refused without
///   touching the disk (a flood of made-up kids costs one listing per
///   interval), so adding or deleting a file takes effect within it. A key is
///   read when first needed and re-read once older than the TTL
///   ([`DEFAULT_KEY_TTL`]). Reading is blocking file I/O: call from a
///   blocking context where that matters.
pub struct KeySet {
    source: Source,
    clock: Arc<dyn Clock>,
    validation: Validation,
    ttl: Duration,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("KeySet");
        match &self.source {
            Source::Single(key) => s.field("key", key),
            Source::Dir { dir, .. } => s.field("dir", dir),
        };
        s.field("validation", &self.validation)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl KeySet {
    fn new(source: Source) -> Self {
        Self {
            source,
            clock: Arc::new(SystemClock),
            validation: Validation::default(),
            ttl: DEFAULT_KEY_TTL,
        }
    }

    /// Verify with one key.
    pub fn single(key: Key) -> Result<Self> {
        if !key.can_verify() {
            return Err(Error::KeyOp("verify"));
        }
        Ok(Self::new(Source::Single(Arc::new(key))))
    }

    /// Verify with the keys in `dir`, chosen by the token's `kid`. Fails if
    /// `dir` is not a readable directory.
    pub fn dir(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::read_dir(&dir).map_err(|source| Error::KeyFile {
            path: dir.clone(),
            source,
        })?;
        Ok(Self::new(Source::Dir {
            dir,
            cache: Mutex::new(HashMap::new()),
            listing: Mutex::new(Listing {
                taken: None,
                kids: Default::default(),
            }),
        }))
    }

    /// Use this clock for expiry checks and the key cache.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Use these time checks.
    pub fn with_validation(mut self, validation: Validation) -> Self {
        self.validation = validation;
        self
    }

    /// Re-read directory keys older than `ttl`.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The key a token with this `kid` would be verified with.
    pub fn key(&self, kid: Option<&KeyId>) -> Result<Arc<Key>> {
        match &self.source {
            Source::Single(key) => match (kid, key.kid()) {
                (Some(want), Some(have)) if want != have => Err(Error::UnknownKid(want.to_string())),
                _ => Ok(key.clone()),
            },
            Source::Dir { dir, cache, listing } => {
                let kid = kid.ok_or(Error::MissingKid)?;
                let now = self.clock.now();
                if !listed(dir, listing, kid, now) {
                    cache.lock().unwrap_or_else(|e| e.into_inner()).remove(kid);
                    return Err(Error::UnknownKid(kid.to_string()));
                }
                let fresh = |c: &Cached| {
                    // A clock that went backwards also forces a re-read.
                    now.duration_since(c.loaded).is_ok_and(|age| age < self.ttl)
                };
                {
                    let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(cached) = cache.get(kid).filter(|c| fresh(c)) {
                        return Ok(cached.key.clone());
                    }
                }
                let loaded = load(dir, kid);
                let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                match loaded {
                    Ok(key) => {
                        let key = Arc::new(key);
                        cache.insert(
                            kid.clone(),
                            Cached {
                                key: key.clone(),
                                loaded: now,
                            },
                        );
                        Ok(key)
                    }
                    Err(err) => {
                        cache.remove(kid);
                        Err(err)
                    }
                }
            }
        }
    }

    /// Verify `token` with the key its `kid` selects, as of the clock's now.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        let parsed = jws::Parsed::parse(token)?;
        let key = self.key(parsed.kid.as_ref())?;
        key.verify_parsed(&parsed, self.clock.now(), &self.validation)
    }
}

/// Whether `{kid}.jwk` was in the directory when last listed, listing it again if the
/// listing is older than [`LISTING_INTERVAL`] (or the clock went backwards).
fn listed(dir: &FsPath, listing: &Mutex<Listing>, kid: &KeyId, now: SystemTime) -> bool {
    let mut listing = listing.lock().unwrap_or_else(|e| e.into_inner());
    let stale = listing.taken.is_none_or(|taken| {
        now.duration_since(taken)
            .map_or(true, |age| age >= LISTING_INTERVAL)
    });
    if stale {
        listing.kids = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                    .filter_map(|name| name.strip_suffix(".jwk")?.parse::<KeyId>().ok())
                    .collect()
            })
            .unwrap_or_default();
        listing.taken = Some(now);
    }
    listing.kids.contains(kid)
}

fn load(dir: &FsPath, kid: &KeyId) -> Result<Key> {
    // KeyId admits only [A-Za-z0-9_-], so this stays inside `dir`.
    let path = dir.join(format!("{kid}.jwk"));
    let key = match Key::from_file(&path) {
        Err(Error::KeyFile { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::UnknownKid(kid.to_string()));
        }
        other => other?,
    };
    match key.kid() {
        Some(inner) if inner != kid => Err(Error::BadKey(format!(
            "{}: the key inside has kid '{inner}', not '{kid}'",
            path.display()
        ))),
        Some(_) => Ok(key),
        // A key file without a kid takes its name's.
        None => Ok(key.with_kid(Some(kid.clone()))),
    }
}
