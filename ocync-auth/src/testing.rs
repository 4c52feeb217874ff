//! Test support shared with other crates' tests (feature `test-support`).
//!
//! [`MotoServer`] (with feature `ecr`) runs moto, a Python emulator of the AWS APIs, as the ECR
//! control plane on 127.0.0.1. `scripts/test.sh` installs it into `target/moto-venv`.
//!
//! What moto does and does not do for ECR: `GetAuthorizationToken` answers
//! `base64("AWS:<account>-auth-token")` with an `expiresAt` in 2015 (already expired);
//! `BatchCheckLayerAvailability` knows only layers uploaded with `InitiateLayerUpload`,
//! `UploadLayerPart` and `CompleteLayerUpload`; the region is taken from the SigV4 scope and
//! signatures are not checked; ECR Public is not emulated; there is no registry (`/v2/`).

#[cfg(feature = "ecr")]
pub use moto::MotoServer;

#[cfg(feature = "ecr")]
mod moto {
    use std::fs::File;
    use std::io::{Read as _, Write as _};
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_ecr::config::{Credentials, SharedCredentialsProvider};

    /// How long moto may take to answer after it is started (it imports a lot of Python).
    const STARTUP: Duration = Duration::from_secs(60);

    /// A `moto_server` child process on a free loopback port, killed on drop.
    ///
    /// The binary is `$OCYNC_TEST_MOTO_BIN`, else `target/moto-venv/bin/moto_server` of this
    /// workspace (what `scripts/test.sh` installs), else `moto_server` on `PATH`.
    ///
    /// ```no_run
    /// use ocync_auth::testing::MotoServer;
    /// use ocync_auth::{CredentialProvider, EcrOptions, EcrProvider};
    ///
    /// # async fn run() -> Result<(), ocync_auth::Error> {
    /// let moto = MotoServer::start();
    /// let provider = EcrProvider::new(EcrOptions::new().sdk_config(moto.sdk_config("eu-west-1")));
    /// let credential = provider.credential(&MotoServer::registry_host("eu-west-1")).await?;
    /// assert!(credential.is_some());
    /// # Ok(())
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct MotoServer {
        child: Child,
        /// Kills moto when this process dies without dropping the server (SIGKILL, abort).
        watchdog: Option<Child>,
        port: u16,
        log: PathBuf,
    }

    impl MotoServer {
        /// moto's default account id.
        pub const ACCOUNT_ID: &'static str = "123456789012";

        /// The password moto's `GetAuthorizationToken` answers for [`MotoServer::ACCOUNT_ID`].
        pub const PASSWORD: &'static str = "123456789012-auth-token";

        /// Starts `moto_server -H 127.0.0.1 -p <free port>` and waits until it answers.
        ///
        /// # Panics
        ///
        /// When moto is not installed ("run scripts/test.sh") or does not answer within a
        /// minute (the panic shows its log).
        pub fn start() -> MotoServer {
            let program = moto_binary();
            let mut failures = Vec::new();
            // A free port can be taken between finding and binding it; try a few.
            for _ in 0..3 {
                let mut server = MotoServer::spawn(&program);
                match server.wait_ready() {
                    Ok(()) => return server,
                    Err(failure) => failures.push(failure),
                }
            }
            panic!(
                "moto_server '{}' did not start:\n{}",
                program.display(),
                failures.join("\n")
            );
        }

        fn spawn(program: &Path) -> MotoServer {
            let port = free_port();
            let log =
                std::env::temp_dir().join(format!("ocync-moto-{}-{port}.log", std::process::id()));
            let out = File::create(&log)
                .unwrap_or_else(|e| panic!("cannot create moto log '{}': {e}", log.display()));
            let err = out.try_clone().expect("moto log handle clones");
            let child = Command::new(program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run moto_server '{}': {e}", program.display()));
            let watchdog = watchdog(child.id());
            MotoServer {
                child,
                watchdog,
                port,
                log,
            }
        }

        fn wait_ready(&mut self) -> Result<(), String> {
            let deadline = Instant::now() + STARTUP;
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(format!("exited with {status}: {}", self.log_text()));
                }
                if answers(address) {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(format!("no answer within {STARTUP:?}: {}", self.log_text()));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        fn log_text(&self) -> String {
            std::fs::read_to_string(&self.log).unwrap_or_default()
        }

        /// `http://127.0.0.1:<port>`.
        pub fn url(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        /// The port moto listens on.
        pub fn port(&self) -> u16 {
            self.port
        }

        /// An SDK configuration that sends every call to this server: static test credentials
        /// (`testing`/`testing`), `region`, the latest behaviour version, and nothing taken from
        /// the environment, profiles or instance metadata.
        pub fn sdk_config(&self, region: &str) -> SdkConfig {
            sdk_config_for(&self.url(), region)
        }

        /// The host of moto's registry in `region`, as ECR names it:
        /// `123456789012.dkr.ecr.<region>.amazonaws.com`.
        pub fn registry_host(region: &str) -> String {
            format!("{}.dkr.ecr.{region}.amazonaws.com", MotoServer::ACCOUNT_ID)
        }
    }

    /// The configuration [`MotoServer::sdk_config`] makes, for any endpoint.
    fn sdk_config_for(endpoint: &str, region: &str) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "test",
            )))
            .endpoint_url(endpoint)
            .build()
    }

    impl Drop for MotoServer {
        fn drop(&mut self) {
            // The watchdog goes first, so it never signals a pid that has been reused.
            if let Some(watchdog) = self.watchdog.as_mut() {
                let _ = watchdog.kill();
                let _ = watchdog.wait();
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.log);
        }
    }

    /// Whether an HTTP server answers on `address`.
    fn answers(address: SocketAddr) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        if stream
            .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut head = [0_u8; 8];
        stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
    }

    fn free_port() -> u16 {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free loopback port")
    }

    /// A `sh` that kills `pid` once its stdin closes, which happens when this process exits in
    /// any way.
    fn watchdog(pid: u32) -> Option<Child> {
        if !cfg!(unix) {
            return None;
        }
        Command::new("sh")
            .args(["-c", &format!("read _; kill {pid} 2>/dev/null")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    }

    fn moto_binary() -> PathBuf {
        if let Some(path) = std::env::var_os("OCYNC_TEST_MOTO_BIN") {
            return PathBuf::from(path);
        }
        let venv =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/moto-venv/bin/moto_server");
        if venv.is_file() {
            return venv;
        }
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("moto_server"))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "moto_server not found: run scripts/test.sh (it installs moto[server] into \
                     target/moto-venv)"
                )
            })
    }
}
