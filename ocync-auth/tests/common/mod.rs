//! Helpers shared by the integration tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};

/// A value that must never appear in an error message or a log line.
pub(crate) const SECRET: &str = "s3cr3t-Zq8vX";

/// A client for loopback fakes: no proxy from the environment and no system CA store needed.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([])
        .build()
        .expect("a plain-http test client builds")
}

/// Writes an executable `docker-credential-<name>` shell script into `dir`.
#[cfg(unix)]
pub(crate) fn write_helper(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Panics if `SECRET` is in the error's `Display`, its `Debug`, or any of its sources.
pub(crate) fn assert_no_secret(error: &(dyn std::error::Error + 'static)) {
    let debug = format!("{error:?}");
    assert!(!debug.contains(SECRET), "secret in Debug: {debug}");
    let mut current = Some(error);
    while let Some(e) = current {
        let shown = e.to_string();
        assert!(!shown.contains(SECRET), "secret in Display: {shown}");
        current = e.source();
    }
}
