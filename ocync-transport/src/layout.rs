//! OCI image layouts (image-spec `image-layout.md`): a directory with `oci-layout`,
//! `index.json` and `blobs/<alg>/<encoded>`, read and written like a repository.
//!
//! - Tags are `org.opencontainers.image.ref.name` annotations on `index.json` entries.
//! - Referrers are manifests with a `subject`; they are listed in `index.json` without a tag
//!   (as ORAS does), so a reader finds them by scanning the index.
//! - Writes are atomic: blobs and `index.json` are written to a temporary file and renamed
//!   into place, blobs only after their digest is proven. `index.json` updates are serialised
//!   within the process; two processes writing one layout at once are not supported.

use std::collections::BTreeMap;
use std::io::ErrorKind as IoErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use ocync_core::{
    ANNOTATION_REF_NAME, Descriptor, Digest, ImageIndex, MAX_MANIFEST_SIZE, Manifest,
};

use crate::error::{Error, ErrorKind};
use crate::referrers::Referrers;
use crate::stream::BlobStream;

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LAYOUT_VERSION: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
const READ_CHUNK: usize = 256 * 1024;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    index_lock: Arc<tokio::sync::Mutex<()>>,
}

pub(crate) fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::layout(path, format!("cannot {what}: {e}"), Some(e))
}

/// Stream a file (or the part of it `file` is limited to) in `READ_CHUNK`s.
pub(crate) fn read_file(
    file: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    path: PathBuf,
) -> BlobStream {
    BlobStream::new(futures::stream::try_unfold(file, move |mut file| {
        let path = path.clone();
        async move {
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            let n = file
                .read_buf(&mut buf)
                .await
                .map_err(|e| io_error(&path, "read a blob", e))?;
            Ok(if n == 0 {
                None
            } else {
                Some((buf.freeze(), file))
            })
        }
    }))
}

impl Layout {
    /// Open an existing layout for reading and writing.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Layout, Error> {
        let root = root.into();
        match tokio::fs::read_to_string(root.join(LAYOUT_FILE)).await {
            Ok(text) => check_version(&root, &text)?,
            Err(e) if e.kind() == IoErrorKind::NotFound => {
                let reason = if root.is_dir() {
                    "not an OCI image layout (there is no oci-layout file); give the directory of a layout, e.g. one written by `ocync copy … oci:<dir>` or `skopeo copy … oci:<dir>`"
                } else {
                    "no such directory"
                };
                return Err(Error::layout(&root, reason, None));
            }
            Err(e) => return Err(io_error(&root, "read oci-layout", e)),
        }
        Ok(Layout {
            root,
            index_lock: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Open a layout, creating the directory and an empty layout if there is none.
    pub async fn create(root: impl Into<PathBuf>) -> Result<Layout, Error> {
        let root = root.into();
        if tokio::fs::try_exists(root.join(LAYOUT_FILE))
            .await
            .unwrap_or(false)
        {
            return Layout::open(root).await;
        }
        if let Ok(mut entries) = tokio::fs::read_dir(&root).await
            && entries.next_entry().await.ok().flatten().is_some()
        {
            return Err(Error::layout(
                &root,
                "the directory is not empty and is not an OCI image layout: choose a new or empty directory",
                None,
            ));
        }
        tokio::fs::create_dir_all(root.join("blobs"))
            .await
            .map_err(|e| io_error(&root, "create the layout directory", e))?;
        let layout = Layout {
            root,
            index_lock: Arc::new(tokio::sync::Mutex::new(())),
        };
        layout
            .write_atomic(&layout.root.join(LAYOUT_FILE), LAYOUT_VERSION.as_bytes())
            .await?;
        layout.write_index(&ImageIndex::new(Vec::new())).await?;
        Ok(layout)
    }

    /// The layout directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.encoded())
    }

    /// The parsed `index.json`.
    pub async fn index(&self) -> Result<ImageIndex, Error> {
        let path = self.root.join(INDEX_FILE);
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| io_error(&path, "read index.json", e))?;
        let manifest = Manifest::from_bytes(
            Bytes::from(bytes),
            Some(ocync_core::MediaType::OciIndex.as_str()),
        )
        .map_err(|e| {
            Error::layout(
                &path,
                format!("index.json is not a valid image index: {e}"),
                None,
            )
        })?;
        match manifest.kind() {
            ocync_core::ManifestKind::Index(i) => Ok((**i).clone()),
            _ => Err(Error::layout(
                &path,
                "index.json is not an image index",
                None,
            )),
        }
    }

    /// Every tag in `index.json`.
    pub async fn tags(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .index()
            .await?
            .manifests
            .iter()
            .filter_map(|d| d.annotation(ANNOTATION_REF_NAME).map(str::to_owned))
            .collect())
    }

    /// The descriptor of a tag or digest, or `None`.
    pub async fn resolve(&self, reference: &str) -> Result<Option<Descriptor>, Error> {
        if let Ok(digest) = reference.parse::<Digest>() {
            if !self.blob_exists(&digest).await? {
                return Ok(None);
            }
            return Ok(Some(
                self.read_manifest(&digest, None, reference)
                    .await?
                    .descriptor(),
            ));
        }
        Ok(self
            .index()
            .await?
            .manifests
            .into_iter()
            .rev()
            .find(|d| d.annotation(ANNOTATION_REF_NAME) == Some(reference)))
    }

    /// A manifest by tag or digest.
    pub async fn manifest(&self, reference: &str) -> Result<Manifest, Error> {
        let (digest, media_type) = match reference.parse::<Digest>() {
            Ok(d) => (d, None),
            Err(_) => match self.resolve(reference).await? {
                Some(d) => (d.digest, Some(d.media_type)),
                None => {
                    return Err(ErrorKind::ManifestNotFound {
                        location: format!("oci:{}", self.root.display()),
                        reference: reference.to_owned(),
                    }
                    .into());
                }
            },
        };
        self.read_manifest(&digest, media_type.as_ref(), reference)
            .await
    }

    async fn read_manifest(
        &self,
        digest: &Digest,
        media_type: Option<&ocync_core::MediaType>,
        reference: &str,
    ) -> Result<Manifest, Error> {
        let path = self.blob_path(digest);
        let len = match tokio::fs::metadata(&path).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == IoErrorKind::NotFound => {
                return Err(ErrorKind::ManifestNotFound {
                    location: format!("oci:{}", self.root.display()),
                    reference: reference.to_owned(),
                }
                .into());
            }
            Err(e) => return Err(io_error(&path, "read a manifest", e)),
        };
        if len > MAX_MANIFEST_SIZE {
            return Err(ErrorKind::ManifestTooLarge {
                location: format!("oci:{}", self.root.display()),
                reference: reference.to_owned(),
                size: len,
                limit: MAX_MANIFEST_SIZE,
            }
            .into());
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| io_error(&path, "read a manifest", e))?;
        Manifest::with_digest(Bytes::from(bytes), media_type.map(|m| m.as_str()), digest).map_err(
            |e| {
                Error::oci(
                    format!("manifest {} in oci:{}", reference, self.root.display()),
                    e,
                )
            },
        )
    }

    /// Whether the blob file exists.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool, Error> {
        let path = self.blob_path(digest);
        tokio::fs::try_exists(&path)
            .await
            .map_err(|e| io_error(&path, "check a blob", e))
    }

    /// Stream a blob, verified against `descriptor`.
    pub async fn blob(&self, descriptor: &Descriptor) -> Result<BlobStream, Error> {
        let path = self.blob_path(&descriptor.digest);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(&path, &format!("open blob {}", descriptor.digest), e))?;
        Ok(read_file(file, path).verified(descriptor, format!("oci:{}", self.root.display())))
    }

    /// Write a blob from a stream. The bytes are verified against `descriptor`, and the file
    /// appears under its digest only when they match.
    pub async fn push_blob(
        &self,
        descriptor: &Descriptor,
        stream: BlobStream,
    ) -> Result<(), Error> {
        let target = self.blob_path(&descriptor.digest);
        let dir = target.parent().expect("blob paths have a parent");
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io_error(dir, "create the blob directory", e))?;
        let temp = temp_path(&target);
        let result = async {
            let mut file = tokio::fs::File::create(&temp)
                .await
                .map_err(|e| io_error(&temp, "create a blob", e))?;
            let mut stream = stream.verified(descriptor, "(upload)".to_owned());
            while let Some(chunk) = stream.next().await {
                file.write_all(&chunk?)
                    .await
                    .map_err(|e| io_error(&temp, "write a blob", e))?;
            }
            file.flush()
                .await
                .map_err(|e| io_error(&temp, "write a blob", e))?;
            drop(file);
            tokio::fs::rename(&temp, &target)
                .await
                .map_err(|e| io_error(&target, "store a blob", e))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result
    }

    /// Write a manifest. With a tag, `index.json` names it; without one, a manifest that has a
    /// subject is listed untagged so its subject's referrers can be found.
    pub async fn push_manifest(&self, manifest: &Manifest, tag: Option<&str>) -> Result<(), Error> {
        let target = self.blob_path(manifest.digest());
        if !tokio::fs::try_exists(&target).await.unwrap_or(false) {
            self.push_blob(
                &manifest.descriptor(),
                BlobStream::from_bytes(manifest.bytes().clone()),
            )
            .await?;
        }
        match tag {
            Some(tag) => {
                let mut descriptor = manifest.descriptor();
                let mut annotations = BTreeMap::new();
                annotations.insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
                descriptor.annotations = Some(annotations);
                self.update_index(|entries| {
                    entries.retain(|d| d.annotation(ANNOTATION_REF_NAME) != Some(tag));
                    entries.push(descriptor);
                })
                .await
            }
            None if manifest.subject().is_some() => {
                self.add_untagged(manifest.referrer_descriptor()).await
            }
            None => Ok(()),
        }
    }

    /// List a manifest in `index.json` without a tag (a root copied by digest, a referrer).
    pub async fn add_untagged(&self, descriptor: Descriptor) -> Result<(), Error> {
        self.update_index(|entries| {
            let listed = entries.iter().any(|d| {
                d.digest == descriptor.digest && d.annotation(ANNOTATION_REF_NAME).is_none()
            });
            if !listed {
                entries.push(descriptor);
            }
        })
        .await
    }

    /// Manifests listed in `index.json` whose subject is `subject`, plus any referrers-tag
    /// index for it.
    pub async fn referrers(&self, subject: &Digest) -> Result<Referrers, Error> {
        let index = self.index().await?;
        let mut found = Vec::new();
        for entry in &index.manifests {
            if !entry.media_type.is_manifest() || entry.digest == *subject {
                continue;
            }
            if entry.annotation(ANNOTATION_REF_NAME) == Some(subject.referrers_tag().as_str()) {
                let fallback = self.manifest(&entry.digest.to_string()).await?;
                found.extend(fallback.children().iter().cloned());
                continue;
            }
            let manifest = self.manifest(&entry.digest.to_string()).await?;
            if manifest.subject().is_some_and(|s| s.digest == *subject) {
                found.push(manifest.referrer_descriptor());
            }
        }
        Ok(Referrers::from_descriptors(found))
    }

    async fn update_index(&self, change: impl FnOnce(&mut Vec<Descriptor>)) -> Result<(), Error> {
        let _guard = self.index_lock.lock().await;
        let mut index = self.index().await?;
        let before = index.manifests.clone();
        change(&mut index.manifests);
        if index.manifests == before {
            return Ok(());
        }
        self.write_index(&index).await
    }

    async fn write_index(&self, index: &ImageIndex) -> Result<(), Error> {
        let manifest = index.to_manifest();
        self.write_atomic(&self.root.join(INDEX_FILE), manifest.bytes())
            .await
    }

    async fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let temp = temp_path(path);
        let result = async {
            let mut file = tokio::fs::File::create(&temp)
                .await
                .map_err(|e| io_error(&temp, "write", e))?;
            file.write_all(bytes)
                .await
                .map_err(|e| io_error(&temp, "write", e))?;
            file.sync_all()
                .await
                .map_err(|e| io_error(&temp, "write", e))?;
            drop(file);
            tokio::fs::rename(&temp, path)
                .await
                .map_err(|e| io_error(path, "write", e))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result
    }
}

fn check_version(root: &Path, text: &str) -> Result<(), Error> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Version {
        image_layout_version: String,
    }
    let v: Version = serde_json::from_str(text)
        .map_err(|e| Error::layout(root, format!("oci-layout is not valid JSON: {e}"), None))?;
    if !v.image_layout_version.starts_with("1.") {
        return Err(Error::layout(
            root,
            format!(
                "unsupported imageLayoutVersion '{}', ocync reads 1.x",
                v.image_layout_version
            ),
            None,
        ));
    }
    Ok(())
}

fn temp_path(target: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file");
    target.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocync_core::MediaType;

    fn manifest_json(config: &Descriptor, subject: Option<&Descriptor>) -> Manifest {
        let mut value = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": [],
        });
        if let Some(s) = subject {
            value["subject"] = serde_json::to_value(s).unwrap();
            value["artifactType"] = "application/vnd.example.sig".into();
        }
        Manifest::from_bytes(Bytes::from(serde_json::to_vec(&value).unwrap()), None).unwrap()
    }

    #[tokio::test]
    async fn write_then_read_tags_blobs_and_referrers() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path().join("out")).await.unwrap();
        let config_bytes = Bytes::from_static(b"{}");
        let config = Descriptor::new(MediaType::OciEmpty, Digest::sha256(&config_bytes), 2);
        layout
            .push_blob(&config, BlobStream::from_bytes(config_bytes.clone()))
            .await
            .unwrap();
        let image = manifest_json(&config, None);
        layout.push_manifest(&image, Some("v1")).await.unwrap();
        let sig = manifest_json(&config, Some(&image.descriptor()));
        layout.push_manifest(&sig, None).await.unwrap();

        let reopened = Layout::open(dir.path().join("out")).await.unwrap();
        assert_eq!(reopened.tags().await.unwrap(), ["v1"]);
        let read = reopened.manifest("v1").await.unwrap();
        assert_eq!(read.bytes(), image.bytes());
        let refs = reopened.referrers(image.digest()).await.unwrap();
        assert_eq!(refs.descriptors.len(), 1);
        assert_eq!(refs.descriptors[0].digest, *sig.digest());
        assert_eq!(
            refs.descriptors[0].artifact_type.as_deref(),
            Some("application/vnd.example.sig")
        );
        assert!(
            reopened
                .referrers(sig.digest())
                .await
                .unwrap()
                .descriptors
                .is_empty()
        );

        // Retagging replaces the entry; pushing the referrer again does not duplicate it.
        layout.push_manifest(&sig, None).await.unwrap();
        layout.push_manifest(&image, Some("v1")).await.unwrap();
        assert_eq!(layout.index().await.unwrap().manifests.len(), 2);
    }

    #[tokio::test]
    async fn corrupt_blob_is_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).await.unwrap();
        let d = Descriptor::new(MediaType::OciLayer, Digest::sha256(b"good"), 4);
        let err = layout
            .push_blob(&d, BlobStream::from_bytes(Bytes::from_static(b"evil")))
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::BlobDigest { .. }),
            "{err:?}"
        );
        assert!(!layout.blob_exists(&d.digest).await.unwrap());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary file removed: {leftovers:?}"
        );
    }

    #[tokio::test]
    async fn opening_a_non_layout_names_the_path_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = Layout::open(dir.path()).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.path().display().to_string()) && msg.contains("no oci-layout file"),
            "{msg}"
        );
        std::fs::write(dir.path().join("x"), b"").unwrap();
        let err = Layout::create(dir.path()).await.unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        let err = Layout::open(dir.path().join("missing")).await.unwrap_err();
        assert!(err.to_string().contains("no such directory"), "{err}");
    }

    #[tokio::test]
    async fn missing_tag_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).await.unwrap();
        let err = layout.manifest("nope").await.unwrap_err();
        assert!(err.is_not_found());
        assert!(err.to_string().contains("'nope'"), "{err}");
    }
}
