//! `ocync expand FILE [--show-secrets]`: print the configuration with `${VAR}` references
//! expanded, to stdout. Secrets (values of `password`, `token`, … keys and of variables whose
//! names say SECRET, PASSWORD, TOKEN, PRIVATE_KEY, CREDENTIAL or API_KEY) are printed as
//! `[REDACTED]` unless `--show-secrets` is given. Unset variables are warned about on stderr.

use std::io::Write as _;

use crate::cli::ExpandArgs;
use crate::config;
use crate::exit::Code;

pub(crate) fn run(args: &ExpandArgs) -> anyhow::Result<Code> {
    let expanded = match config::expand(&args.config, args.show_secrets) {
        Ok(expanded) => expanded,
        Err(err) => {
            for w in err.warnings() {
                eprintln!("warning: {w}");
            }
            return Err(err.into());
        }
    };
    for w in &expanded.warnings {
        eprintln!("warning: {w}");
    }
    if expanded.reformatted {
        eprintln!(
            "note: secrets could not be redacted in place, so the document was re-serialised (comments and formatting are not kept)"
        );
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(expanded.text.as_bytes())?;
    if !expanded.text.is_empty() && !expanded.text.ends_with('\n') {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    Ok(Code::Ok)
}
