//! [`Repository`]: one place images live, a registry repository or an OCI image layout, behind
//! the operations the copy engine needs.

use ocync_core::{Descriptor, Digest, Manifest};

use crate::client::Client;
use crate::error::Error;
use crate::layout::Layout;
use crate::manifest::PushedManifest;
use crate::referrers::Referrers;
use crate::stream::BlobStream;
use crate::upload::UploadSession;

/// A registry repository or an OCI image layout.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Repository {
    /// A repository on a registry.
    Registry {
        /// The registry's client.
        client: Client,
        /// The repository path (without the client's path prefix).
        name: String,
    },
    /// An OCI image layout directory.
    Layout(Layout),
}

impl Repository {
    /// A repository on a registry.
    pub fn registry(client: Client, name: impl Into<String>) -> Repository {
        Repository::Registry {
            client,
            name: name.into(),
        }
    }

    /// An OCI image layout.
    pub fn layout(layout: Layout) -> Repository {
        Repository::Layout(layout)
    }

    /// A name for messages: `registry/repository` or `oci:<dir>`.
    pub fn display_name(&self) -> String {
        match self {
            Repository::Registry { client, name } => client.display_name(name),
            Repository::Layout(l) => format!("oci:{}", l.path().display()),
        }
    }

    /// The registry client, for registry repositories.
    pub fn client(&self) -> Option<&Client> {
        match self {
            Repository::Registry { client, .. } => Some(client),
            Repository::Layout(_) => None,
        }
    }

    /// A manifest by tag or digest.
    pub async fn manifest(&self, reference: &str) -> Result<Manifest, Error> {
        match self {
            Repository::Registry { client, name } => client.manifest(name, reference).await,
            Repository::Layout(l) => l.manifest(reference).await,
        }
    }

    /// The descriptor of a tag or digest, or `None` when absent.
    pub async fn manifest_head(&self, reference: &str) -> Result<Option<Descriptor>, Error> {
        match self {
            Repository::Registry { client, name } => client.manifest_head(name, reference).await,
            Repository::Layout(l) => l.resolve(reference).await,
        }
    }

    /// Store a manifest under `tag`, or by its digest when `tag` is `None`.
    pub async fn push_manifest(
        &self,
        manifest: &Manifest,
        tag: Option<&str>,
    ) -> Result<PushedManifest, Error> {
        match self {
            Repository::Registry { client, name } => {
                let reference = tag.map_or_else(|| manifest.digest().to_string(), str::to_owned);
                client.push_manifest(name, &reference, manifest).await
            }
            Repository::Layout(l) => {
                l.push_manifest(manifest, tag).await?;
                Ok(PushedManifest {
                    digest: Some(manifest.digest().clone()),
                    subject_acknowledged: true,
                })
            }
        }
    }

    /// Whether the blob is present.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool, Error> {
        match self {
            Repository::Registry { client, name } => client.blob_exists(name, digest).await,
            Repository::Layout(l) => l.blob_exists(digest).await,
        }
    }

    /// Stream a blob, verified against its descriptor.
    pub async fn blob(&self, descriptor: &Descriptor) -> Result<BlobStream, Error> {
        match self {
            Repository::Registry { client, name } => client.blob(name, descriptor).await,
            Repository::Layout(l) => l.blob(descriptor).await,
        }
    }

    /// Store a blob from a stream (into `session` when a registry already opened one).
    pub async fn push_blob(
        &self,
        descriptor: &Descriptor,
        stream: BlobStream,
        session: Option<UploadSession>,
    ) -> Result<(), Error> {
        match self {
            Repository::Registry { client, name } => {
                client.push_blob(name, descriptor, stream, session).await
            }
            Repository::Layout(l) => l.push_blob(descriptor, stream).await,
        }
    }

    /// The referrers of `subject`.
    pub async fn referrers(&self, subject: &Digest) -> Result<Referrers, Error> {
        match self {
            Repository::Registry { client, name } => client.referrers(name, subject).await,
            Repository::Layout(l) => l.referrers(subject).await,
        }
    }

    /// Every tag.
    pub async fn tags(&self) -> Result<Vec<String>, Error> {
        match self {
            Repository::Registry { client, name } => client.tags(name).await,
            Repository::Layout(l) => l.tags().await,
        }
    }

    /// Whether the repository keeps referrers itself (a layout, or a registry that answered
    /// with `OCI-Subject` or serves the referrers API); `None` when not known yet.
    pub fn keeps_referrers(&self) -> Option<bool> {
        match self {
            Repository::Registry { client, .. } => client.supports_referrers_api(),
            Repository::Layout(_) => Some(true),
        }
    }

    /// List a root manifest copied without a tag, so it stays discoverable (layouts only).
    pub(crate) async fn list_untagged(&self, manifest: &Manifest) -> Result<(), Error> {
        match self {
            Repository::Registry { .. } => Ok(()),
            Repository::Layout(l) => l.add_untagged(manifest.descriptor()).await,
        }
    }
}
