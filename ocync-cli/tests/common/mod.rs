//! Helpers shared by the CLI's integration tests: a hermetic `ocync` command and a peak
//! memory probe.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

pub(crate) fn ocync() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocync"));
    // Hermetic: no user docker config, no proxies, no colours, no cloud metadata.
    cmd.env("DOCKER_CONFIG", "/nonexistent-docker-config")
        .env_remove("RUST_LOG")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env("NO_COLOR", "1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// Run to completion, sampling the child's peak resident set (VmHWM) while it runs; panics
/// with its stderr if it fails.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all of them probe memory"
)]
pub(crate) fn peak_rss_kib(cmd: &mut Command) -> u64 {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain stderr as it comes so a chatty child never blocks on a full pipe.
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        stderr.read_to_string(&mut err).unwrap();
        err
    });
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            let err = reader.join().unwrap();
            assert!(status.success(), "{err}");
            assert!(peak > 0, "sampled the process at least once");
            return peak;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
