//! A build script's view of ocync: copy one image in a few lines.
//! Credentials come from docker's config.json; every platform and every referrer is copied.
//!
//! ```text
//! cargo run -p ocync-examples --example copy_image -- <source> <target>
//! cargo run -p ocync-examples --example copy_image        # the bundled layout into target/
//! ```

use std::error::Error;
use std::process::ExitCode;

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let bundled = concat!(
        "oci:",
        env!("CARGO_MANIFEST_DIR"),
        "/quickstart/layout:demo"
    );
    let scratch = concat!(
        "oci:",
        env!("CARGO_MANIFEST_DIR"),
        "/../target/copy_image_example"
    );
    let source = args.next().unwrap_or_else(|| bundled.to_owned());
    let target = args.next().unwrap_or_else(|| scratch.to_owned());

    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(ocync_transport::copy(&source, &target))?;

    eprintln!(
        "copied {} -> {}: {} manifests, {} blobs uploaded, {} mounted, {} already there",
        report.source,
        report.target,
        report.manifests_pushed,
        report.blobs_uploaded,
        report.blobs_mounted,
        report.blobs_skipped
    );
    Ok(())
}
