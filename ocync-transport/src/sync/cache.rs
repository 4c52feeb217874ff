//! The persistent cache: what previous runs learned, so an unchanged tag costs one `HEAD` per
//! side and known blobs need no `HEAD`.
//!
//! Nothing in it is trusted blindly. A tag entry is used only when the source `HEAD` still
//! gives the cached digest and every target `HEAD` gives the pushed one; a blob entry only
//! saves a `HEAD` or names a mount source, and a manifest push refused with
//! `MANIFEST_BLOB_UNKNOWN` (or a mount that does not happen) removes the entry and the blob is
//! uploaded in the same run. A file that cannot be read is ignored with a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use ocync_core::Digest;

const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    written_at: u64,
    /// `source|repository|tag|platforms` -> what was pushed.
    tags: BTreeMap<String, TagEntry>,
    /// target site -> digest -> repositories known to hold it.
    blobs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// `source|repository|subject` -> fingerprint of its referrers.
    referrers: BTreeMap<String, String>,
    /// registry endpoint -> whether it serves the referrers API (saves a probe per run).
    #[serde(default)]
    referrers_api: BTreeMap<String, bool>,
}

/// What a previous run did for one source tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TagEntry {
    /// The source digest the tag had.
    pub(crate) source: Digest,
    /// The digest pushed (differs from `source` when platforms were filtered).
    pub(crate) pushed: Digest,
    /// `target|repository` -> pushed digest, for every target that got it.
    pub(crate) targets: BTreeMap<String, Digest>,
}

/// The cache of one run: loaded at the start, saved at the end.
#[derive(Debug)]
pub(crate) struct Cache {
    path: Option<PathBuf>,
    file: Mutex<File>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Cache {
    /// An empty cache that is never saved.
    pub(crate) fn disabled() -> Cache {
        Cache {
            path: None,
            file: Mutex::new(File::default()),
        }
    }

    /// Load `path`; a missing file is an empty cache, an unreadable, corrupt, foreign-version
    /// or expired one is ignored with a warning.
    pub(crate) fn load(path: &Path, ttl: Option<Duration>) -> Cache {
        let file = match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the cache, starting without it");
                File::default()
            }
            Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
                Ok(f) if f.version != VERSION => {
                    tracing::warn!(path = %path.display(), version = f.version, "cache written by another version, starting without it");
                    File::default()
                }
                Ok(f)
                    if ttl
                        .is_some_and(|ttl| now().saturating_sub(f.written_at) > ttl.as_secs()) =>
                {
                    tracing::info!(path = %path.display(), "cache older than its ttl, starting without it");
                    File::default()
                }
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cache file is corrupt, ignoring it");
                    File::default()
                }
            },
        };
        Cache {
            path: Some(path.to_owned()),
            file: Mutex::new(file),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut File) -> T) -> T {
        f(&mut self.file.lock().expect("cache lock"))
    }

    pub(crate) fn tag(&self, key: &str) -> Option<TagEntry> {
        self.with(|f| f.tags.get(key).cloned())
    }

    pub(crate) fn set_tag(&self, key: String, entry: TagEntry) {
        self.with(|f| f.tags.insert(key, entry));
    }

    /// Repositories of `site` believed to hold `digest`.
    pub(crate) fn blob_repositories(&self, site: &str, digest: &Digest) -> Vec<String> {
        self.with(|f| {
            f.blobs
                .get(site)
                .and_then(|d| d.get(&digest.to_string()))
                .map(|r| r.iter().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// Digests of `site` believed to be in `repository`.
    pub(crate) fn blob_repositories_for(
        &self,
        site: &str,
        repository: &str,
    ) -> std::collections::HashSet<Digest> {
        self.with(|f| {
            f.blobs
                .get(site)
                .map(|digests| {
                    digests
                        .iter()
                        .filter(|(_, repos)| repos.contains(repository))
                        .filter_map(|(d, _)| d.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    pub(crate) fn add_blob(&self, site: &str, digest: &Digest, repository: &str) {
        self.with(|f| {
            f.blobs
                .entry(site.to_owned())
                .or_default()
                .entry(digest.to_string())
                .or_default()
                .insert(repository.to_owned());
        });
    }

    pub(crate) fn remove_blob(&self, site: &str, digest: &Digest, repository: &str) {
        self.with(|f| {
            if let Some(repos) = f
                .blobs
                .get_mut(site)
                .and_then(|d| d.get_mut(&digest.to_string()))
            {
                repos.remove(repository);
            }
        });
    }

    pub(crate) fn referrers(&self, key: &str) -> Option<String> {
        self.with(|f| f.referrers.get(key).cloned())
    }

    pub(crate) fn set_referrers(&self, key: String, fingerprint: String) {
        self.with(|f| f.referrers.insert(key, fingerprint));
    }

    pub(crate) fn referrers_api(&self, site: &str) -> Option<bool> {
        self.with(|f| f.referrers_api.get(site).copied())
    }

    pub(crate) fn set_referrers_api(&self, site: &str, supported: bool) {
        self.with(|f| f.referrers_api.insert(site.to_owned(), supported));
    }

    /// Write the cache atomically (temporary file, fsync, rename).
    pub(crate) fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = self.with(|f| {
            f.version = VERSION;
            f.written_at = now();
            serde_json::to_vec(f).expect("the cache serialises")
        });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temp = path.with_extension(format!("tmp.{}", std::process::id()));
        {
            use std::io::Write as _;
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&temp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> TagEntry {
        let d = Digest::sha256(b"x");
        TagEntry {
            source: d.clone(),
            pushed: d.clone(),
            targets: BTreeMap::from([("dst|app".to_owned(), d)]),
        }
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state.json");
        let cache = Cache::load(&path, None);
        cache.set_tag("k".into(), entry());
        let d = Digest::sha256(b"blob");
        cache.add_blob("site", &d, "repo-a");
        cache.add_blob("site", &d, "repo-b");
        cache.remove_blob("site", &d, "repo-a");
        cache.set_referrers("r".into(), "fp".into());
        cache.save().unwrap();
        let again = Cache::load(&path, Some(Duration::from_secs(60)));
        assert_eq!(again.tag("k"), Some(entry()));
        assert_eq!(again.blob_repositories("site", &d), ["repo-b"]);
        assert_eq!(again.referrers("r").as_deref(), Some("fp"));
    }

    #[test]
    fn corrupt_foreign_and_expired_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(Cache::load(&path, None).tag("k"), None);
        std::fs::write(
            &path,
            br#"{"version":99,"written_at":0,"tags":{},"blobs":{},"referrers":{}}"#,
        )
        .unwrap();
        assert_eq!(Cache::load(&path, None).tag("k"), None);

        let cache = Cache::load(&path, None);
        cache.set_tag("k".into(), entry());
        cache.save().unwrap();
        let mut text: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        text["written_at"] = 1.into();
        std::fs::write(&path, serde_json::to_vec(&text).unwrap()).unwrap();
        assert_eq!(
            Cache::load(&path, Some(Duration::from_secs(3600))).tag("k"),
            None,
            "expired"
        );
        assert!(Cache::load(&path, None).tag("k").is_some(), "no ttl: kept");
    }
}
