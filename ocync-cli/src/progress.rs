//! Live progress of a sync on stderr: a bar for a person at a terminal, a heartbeat log line
//! every 30 s otherwise (CI logs, Kubernetes), nothing with `-q`.
//!
//! Log lines and the bar share stderr: while a bar is drawn, [`LogWriter`] hides it for the
//! length of each log line, so lines never tear the bar or the bar a line.

use std::io::{IsTerminal as _, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ocync_transport::{Progress, ProgressSnapshot, SyncOptions, SyncPlan, SyncReport};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cli::{Global, LogFormat};

/// The bar being drawn, if any, for the log writer.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// How often a log-only display says where the run is.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(150);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A bar redrawn in place (stderr is a terminal, text logs).
    Bar,
    /// An info log line now and then.
    Heartbeat,
    /// Nothing (`-q`).
    Off,
}

impl Mode {
    /// The mode for these options on this stderr.
    pub(crate) fn detect(global: &Global) -> Mode {
        Mode::choose(
            global,
            std::io::stderr().is_terminal(),
            std::env::var_os("TERM").is_some_and(|t| t == "dumb"),
        )
    }

    fn choose(global: &Global, terminal: bool, dumb: bool) -> Mode {
        if global.quiet {
            Mode::Off
        } else if terminal && !dumb && global.log_format == LogFormat::Text {
            Mode::Bar
        } else {
            Mode::Heartbeat
        }
    }
}

/// Run a sync with its progress shown in `mode`; the display is gone before the report is
/// returned, so the summary that follows is never drawn over.
pub(crate) async fn sync(plan: SyncPlan, options: SyncOptions, mode: Mode) -> SyncReport {
    let progress = Arc::new(Progress::new());
    let display = Display::start(progress.clone(), mode);
    let report = ocync_transport::sync(plan, options.progress(progress)).await;
    display.finish().await;
    report
}

/// A running display; [`Display::finish`] removes the bar.
#[derive(Debug)]
pub(crate) struct Display {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Display {
    /// Show `progress` in `mode` until [`Display::finish`].
    pub(crate) fn start(progress: Arc<Progress>, mode: Mode) -> Display {
        let (stop, stopped) = oneshot::channel();
        let task = match mode {
            Mode::Off => None,
            Mode::Bar => Some(tokio::spawn(bar(progress, stopped))),
            Mode::Heartbeat => Some(tokio::spawn(heartbeat(progress, stopped))),
        };
        Display {
            stop: Some(stop),
            task,
        }
    }

    /// Stop and clear the display (the summary follows in the log).
    pub(crate) async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn bar(progress: Arc<Progress>, mut stopped: oneshot::Receiver<()>) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let template = if colour {
        "{spinner:.cyan} {elapsed_precise} [{bar:28.cyan/blue}] {pos}/{len} images  {msg}"
    } else {
        "{spinner} {elapsed_precise} [{bar:28}] {pos}/{len} images  {msg}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    *BAR.lock().expect("progress bar") = Some(bar.clone());
    let mut rate = Rate::new();
    loop {
        let now = progress.snapshot();
        bar.set_length(now.images_total.max(now.images_done));
        bar.set_position(now.images_done);
        bar.set_message(describe(&now, rate.per_second(now.bytes_uploaded)));
        bar.tick();
        tokio::select! {
            _ = &mut stopped => break,
            () = tokio::time::sleep(TICK) => {}
        }
    }
    *BAR.lock().expect("progress bar") = None;
    bar.finish_and_clear();
}

async fn heartbeat(progress: Arc<Progress>, mut stopped: oneshot::Receiver<()>) {
    let mut rate = Rate::new();
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
        let now = progress.snapshot();
        tracing::info!(
            "progress: {}/{} images, {}",
            now.images_done,
            now.images_total,
            describe(&now, rate.per_second(now.bytes_uploaded))
        );
    }
}

/// `1.2 GiB uploaded (35 MiB/s), 6 transfers, 1 failed`.
fn describe(now: &ProgressSnapshot, per_second: u64) -> String {
    let mut text = format!(
        "{} uploaded ({}/s), {} transfer{}",
        HumanBytes(now.bytes_uploaded),
        HumanBytes(per_second),
        now.transfers,
        if now.transfers == 1 { "" } else { "s" }
    );
    if now.images_failed > 0 {
        text.push_str(&format!(", {} failed", now.images_failed));
    }
    text
}

/// Upload rate over the last few seconds (a whole-run average hides a stall).
struct Rate {
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl Rate {
    const WINDOW: Duration = Duration::from_secs(5);

    fn new() -> Rate {
        Rate {
            samples: std::collections::VecDeque::new(),
        }
    }

    fn per_second(&mut self, bytes: u64) -> u64 {
        let now = Instant::now();
        self.samples.push_back((now, bytes));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Rate::WINDOW)
        {
            self.samples.pop_front();
        }
        let (t0, b0) = self.samples.front().copied().unwrap_or((now, bytes));
        let seconds = now.duration_since(t0).as_secs_f64();
        if seconds < 0.5 {
            return 0;
        }
        (bytes.saturating_sub(b0) as f64 / seconds) as u64
    }
}

/// stderr for the log, hiding the progress bar while a line is written.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let bar = BAR.lock().expect("progress bar").clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(quiet: bool, log_format: LogFormat) -> Global {
        Global {
            verbose: 0,
            quiet,
            log_format,
        }
    }

    #[test]
    fn a_bar_only_for_text_logs_on_a_real_terminal() {
        let text = global(false, LogFormat::Text);
        assert_eq!(Mode::choose(&text, true, false), Mode::Bar);
        assert_eq!(Mode::choose(&text, false, false), Mode::Heartbeat);
        assert_eq!(
            Mode::choose(&text, true, true),
            Mode::Heartbeat,
            "TERM=dumb"
        );
        let json = global(false, LogFormat::Json);
        assert_eq!(Mode::choose(&json, true, false), Mode::Heartbeat);
        assert_eq!(
            Mode::choose(&global(true, LogFormat::Text), true, false),
            Mode::Off
        );
    }

    /// A log line and nothing else: the heartbeat every 30 s, and none after `finish`.
    #[tokio::test(start_paused = true)]
    async fn the_heartbeat_logs_every_30_seconds_until_finished() {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let progress = Arc::new(Progress::new());
        let display = Display::start(progress.clone(), Mode::Heartbeat);
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(lines.0.lock().unwrap().is_empty(), "nothing before 30 s");
        tokio::time::sleep(Duration::from_secs(62)).await;
        display.finish().await;
        tokio::time::sleep(Duration::from_secs(120)).await;
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("progress: 0/0 images").count(), 3, "{text}");
    }

    #[test]
    fn the_message_names_bytes_rate_transfers_and_failures() {
        let mut now = ProgressSnapshot::default();
        now.bytes_uploaded = 3 * 1024 * 1024;
        now.transfers = 1;
        assert_eq!(
            describe(&now, 1024),
            "3.00 MiB uploaded (1.00 KiB/s), 1 transfer"
        );
        now.transfers = 4;
        now.images_failed = 2;
        assert_eq!(
            describe(&now, 0),
            "3.00 MiB uploaded (0 B/s), 4 transfers, 2 failed"
        );
    }
}
