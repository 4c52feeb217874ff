//! A throwaway certificate authority for HTTPS tests, and helpers that serve an axum router
//! over plain HTTP or TLS on a random loopback port.
//!
//! axum has no TLS of its own, so [`serve_tls`] accepts connections with
//! `tokio_rustls::TlsAcceptor` and hands them to hyper-util's auto (HTTP/1.1 or HTTP/2) server.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names the leaf certificate is valid for: the loopback addresses (as IP SANs) and
/// `localhost`.
pub const LEAF_NAMES: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

/// A certificate authority and one server certificate it signed for the loopback names in
/// [`LEAF_NAMES`] and any extra DNS names ([`TestCa::with_names`]). Generated fresh (ECDSA
/// P-256) for every instance.
pub struct TestCa {
    names: Vec<String>,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    leaf_cert_pem: String,
    leaf_cert_der: CertificateDer<'static>,
    leaf_key_pem: String,
    leaf_key_der: Vec<u8>,
}

impl TestCa {
    /// Generate a CA and a leaf certificate signed by it for [`LEAF_NAMES`].
    pub fn new() -> TestCa {
        TestCa::with_names(&[])
    }

    /// Generate a CA and a leaf certificate valid for [`LEAF_NAMES`] plus `names` (DNS names
    /// such as `123456789012.dkr.ecr.us-east-1.amazonaws.com` or `myreg.azurecr.io`, or more
    /// IP addresses), so a client that reaches a loopback server through a CONNECT proxy can
    /// verify it under a real registry's host name.
    pub fn with_names(names: &[&str]) -> TestCa {
        install_crypto_provider();
        let ca_key = KeyPair::generate().expect("generate the test ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("test ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.distinguished_name = distinguished_name("ocync test ca");
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("self-sign the test ca");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("generate the test leaf key");
        let mut all_names: Vec<String> = LEAF_NAMES.iter().map(|n| (*n).to_owned()).collect();
        for name in names {
            if !all_names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                all_names.push((*name).to_owned());
            }
        }
        let mut leaf_params = CertificateParams::new(all_names.clone())
            .unwrap_or_else(|e| panic!("invalid test certificate names {all_names:?}: {e}"));
        leaf_params.distinguished_name = distinguished_name("127.0.0.1");
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("sign the test leaf certificate");

        TestCa {
            names: all_names,
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            leaf_cert_pem: leaf_cert.pem(),
            leaf_cert_der: leaf_cert.der().clone(),
            leaf_key_pem: leaf_key.serialize_pem(),
            leaf_key_der: leaf_key.serialized_der().to_vec(),
        }
    }

    /// The names the leaf certificate is valid for: [`LEAF_NAMES`], then the extra names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// Write the CA certificate to `dir/ca.pem` and return that path.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem)
            .unwrap_or_else(|e| panic!("cannot write '{}': {e}", path.display()));
        path
    }

    /// The leaf (server) certificate, PEM.
    pub fn leaf_cert_pem(&self) -> &str {
        &self.leaf_cert_pem
    }

    /// The leaf's private key, PKCS#8 PEM.
    pub fn leaf_key_pem(&self) -> &str {
        &self.leaf_key_pem
    }

    /// A rustls server configuration presenting the leaf certificate, with ALPN `h2` and
    /// `http/1.1`.
    pub fn rustls_server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default tls versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.leaf_cert_der.clone()], key)
            .expect("the test leaf certificate matches its key");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// The CA as a reqwest root certificate.
    pub fn reqwest_certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_der(&self.ca_der).expect("the test ca is valid der")
    }

    /// A reqwest client that trusts this CA and nothing else, and never uses a proxy from the
    /// environment (the harness's servers are all on loopback).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([self.reqwest_certificate()])
            .no_proxy()
            .build()
            .expect("build a reqwest client trusting the test ca")
    }
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("leaf_names", &self.names)
            .finish_non_exhaustive()
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Install aws-lc-rs as the process-wide rustls provider, so `ServerConfig::builder()` and
/// `ClientConfig::builder()` work in tests even if another crate enables a second provider.
/// Installing twice is harmless: the second call reports an error that is ignored.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A reqwest client for plain-HTTP loopback servers that does not depend on the system
/// certificate store (reqwest's default client fails to build when there is none) and never
/// uses a proxy from the environment.
pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .no_proxy()
        .build()
        .expect("build a plain reqwest client")
}

/// Serve `router` over plain HTTP (HTTP/1.1, or HTTP/2 with prior knowledge) on a random
/// `127.0.0.1` port. Abort the returned task to stop accepting connections.
pub async fn serve(router: axum::Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = bind_loopback().await;
    let addr = listener
        .local_addr()
        .expect("local address of the listener");
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let router = router.clone();
            tokio::spawn(async move {
                let service = TowerToHyperService::new(router);
                // Connection errors (a client hanging up mid-request) are part of some tests.
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, handle)
}

/// Serve `router` over TLS with `ca`'s leaf certificate (ALPN `h2` and `http/1.1`) on a random
/// `127.0.0.1` port. Abort the returned task to stop accepting connections.
pub async fn serve_tls(router: axum::Router, ca: &TestCa) -> (SocketAddr, JoinHandle<()>) {
    let listener = bind_loopback().await;
    let addr = listener
        .local_addr()
        .expect("local address of the listener");
    let acceptor = TlsAcceptor::from(ca.rustls_server_config());
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                // A failed handshake (e.g. a client that does not trust the CA) only ends
                // this connection.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = TowerToHyperService::new(router);
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, handle)
}

async fn bind_loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a random 127.0.0.1 port")
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    fn router() -> axum::Router {
        axum::Router::new().route("/hello", get(|| async { "hello" }))
    }

    #[tokio::test]
    async fn tls_server_is_trusted_only_through_the_ca_for_ip_and_localhost() {
        let ca = TestCa::new();
        let (addr, handle) = serve_tls(router(), &ca).await;
        let client = ca.client();

        let resp = client
            .get(format!("https://{addr}/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2, "alpn picks h2");
        assert_eq!(resp.text().await.unwrap(), "hello");

        let resp = client
            .get(format!("https://localhost:{}/hello", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);

        let http1 = reqwest::Client::builder()
            .tls_certs_only([ca.reqwest_certificate()])
            .http1_only()
            .build()
            .unwrap();
        let resp = http1
            .get(format!("https://{addr}/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_11);

        // Another CA's client must fail the handshake: the trust really comes from the CA.
        let stranger = TestCa::new().client();
        let err = stranger
            .get(format!("https://{addr}/hello"))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        handle.abort();
    }

    #[tokio::test]
    async fn extra_names_are_trusted_and_others_are_not() {
        let ca = TestCa::with_names(&["myreg.azurecr.io", "localhost"]);
        assert_eq!(
            ca.names(),
            ["127.0.0.1", "localhost", "::1", "myreg.azurecr.io"]
        );
        let (addr, handle) = serve_tls(router(), &ca).await;
        let resolving = |name: &str| {
            reqwest::Client::builder()
                .tls_certs_only([ca.reqwest_certificate()])
                .no_proxy()
                .resolve(name, addr)
                .build()
                .unwrap()
        };
        let resp = resolving("myreg.azurecr.io")
            .get(format!("https://myreg.azurecr.io:{}/hello", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let err = resolving("other.azurecr.io")
            .get(format!("https://other.azurecr.io:{}/hello", addr.port()))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        handle.abort();
    }

    #[tokio::test]
    async fn plain_server_answers_and_the_pems_look_right() {
        let (addr, handle) = serve(router()).await;
        let body = plain_client()
            .get(format!("http://{addr}/hello"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "hello");
        handle.abort();

        let ca = TestCa::new();
        assert!(ca.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(
            ca.leaf_cert_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(ca.leaf_key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(ca.ca_pem(), ca.leaf_cert_pem());
        let dir = tempfile::tempdir().unwrap();
        let path = ca.write_ca(dir.path());
        assert_eq!(std::fs::read_to_string(path).unwrap(), ca.ca_pem());
    }
}
