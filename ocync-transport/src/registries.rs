//! [`Registries`]: one [`Client`] per registry, built from per-registry settings and one
//! credential provider, and the opening of [`Location`]s as [`Repository`]s.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use ocync_auth::{CredentialProvider, DockerConfigProvider};

use crate::client::{Client, ClientBuilder};
use crate::error::{Error, ErrorKind};
use crate::layout::Layout;
use crate::location::Location;
use crate::repository::Repository;

/// Clients for every registry a run talks to, sharing one credential provider. A registry
/// without explicit settings gets the defaults (HTTPS, loopback falls back to HTTP).
pub struct Registries {
    credentials: Arc<dyn CredentialProvider>,
    settings: HashMap<String, ClientBuilder>,
    clients: Mutex<HashMap<String, Client>>,
}

impl fmt::Debug for Registries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registries")
            .field("credentials", &self.credentials.name())
            .field("configured", &self.settings.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Registries {
    /// Registries that take credentials from `credentials`.
    pub fn new(credentials: Arc<dyn CredentialProvider>) -> Registries {
        Registries {
            credentials,
            settings: HashMap::new(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Registries with credentials from docker's `config.json` (`$DOCKER_CONFIG`, else
    /// `~/.docker/config.json`; none when the file does not exist).
    pub fn from_docker_config() -> Result<Registries, Error> {
        let provider = DockerConfigProvider::from_env().map_err(|source| -> Error {
            ErrorKind::Auth {
                registry: "(docker config)".to_owned(),
                provider: Some("docker-config"),
                source,
            }
            .into()
        })?;
        Ok(Registries::new(Arc::new(provider)))
    }

    /// Settings for one registry (`host[:port]`); the builder's credentials, if unset, are
    /// the shared provider.
    pub fn configure(&mut self, registry: &str, settings: ClientBuilder) -> &mut Registries {
        self.settings
            .insert(registry.to_ascii_lowercase(), settings);
        self
    }

    /// The client for `registry` (`host[:port]`), built on first use.
    pub fn client(&self, registry: &str) -> Result<Client, Error> {
        let key = registry.to_ascii_lowercase();
        let mut clients = self.clients.lock().expect("registries lock");
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let builder = self
            .settings
            .get(&key)
            .cloned()
            .unwrap_or_else(|| ClientBuilder::new(&key))
            .credentials_if_unset(self.credentials.clone());
        let client = builder.build()?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Open a location as a repository: a registry repository, or a layout (created when
    /// `create` is set and it does not exist yet).
    pub async fn open(&self, location: &Location, create: bool) -> Result<Repository, Error> {
        match location {
            Location::Registry(r) => Ok(Repository::registry(
                self.client(r.registry())?,
                r.repository(),
            )),
            Location::Layout { path, .. } => {
                let layout = if create {
                    Layout::create(path).await?
                } else {
                    Layout::open(path).await?
                };
                Ok(Repository::layout(layout))
            }
        }
    }
}
