//! Shutdown on SIGTERM (Kubernetes, systemd) and SIGINT (Ctrl-C): the engine stops starting
//! work and gives running transfers time to finish; a second signal ends the process at once.

use tokio::sync::watch;

/// A receiver that turns `true` on the first SIGTERM or SIGINT.
pub(crate) fn shutdown() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::warn!(
            "signal received: stopping; transfers still running get time to finish (send it again to stop now)"
        );
        let _ = tx.send(true);
        wait_for_signal().await;
        tracing::error!("second signal: stopping now");
        #[expect(
            clippy::exit,
            reason = "a second signal asks to stop now, without draining"
        )]
        std::process::exit(130);
    });
    rx
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
