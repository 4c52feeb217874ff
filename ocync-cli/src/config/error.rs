//! [`ConfigError`]: every problem found in a configuration file, each with its position and key
//! path, plus the warnings found on the way.

use std::fmt;

/// A position in the configuration file as the user wrote it (before `${VAR}` expansion):
/// 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    /// Line, from 1.
    pub(crate) line: usize,
    /// Column in characters, from 1.
    pub(crate) column: usize,
}

/// One error or warning: `<file>:<line>:<column>: <key path>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diagnostic {
    /// The configuration file, as the user named it.
    pub(crate) file: String,
    /// Where in the file; `None` when the problem has no position (an unreadable file).
    pub(crate) pos: Option<Pos>,
    /// The key path (`mappings[2].source`); empty when the problem is not about one key.
    pub(crate) path: String,
    /// What is wrong, lowercase, never containing a secret value.
    pub(crate) message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(pos) = self.pos {
            write!(f, ":{}:{}", pos.line, pos.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// An invalid configuration: all the errors found (at least one), in file order, and the
/// warnings found before validation stopped.
///
/// `Display` prints one error per line. Lines after the first start with `error: `, so that the
/// CLI's `error: {err}` report shows every error the same way.
#[derive(Debug, Clone)]
pub(crate) struct ConfigError {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl ConfigError {
    /// An error from diagnostics; `errors` must not be empty.
    pub(crate) fn new(mut errors: Vec<Diagnostic>, warnings: Vec<Diagnostic>) -> ConfigError {
        errors.sort_by_key(|d| d.pos);
        ConfigError { errors, warnings }
    }

    /// An error that is not about a position in the file (the file cannot be read).
    pub(crate) fn whole_file(file: &str, message: String) -> ConfigError {
        ConfigError::new(
            vec![Diagnostic {
                file: file.to_owned(),
                pos: None,
                path: String::new(),
                message,
            }],
            Vec::new(),
        )
    }

    /// The errors, in file order.
    #[allow(dead_code, reason = "for callers that report errors one by one")]
    pub(crate) fn errors(&self) -> &[Diagnostic] {
        &self.errors
    }

    /// Warnings found before the errors stopped validation (unset variables, deprecated keys).
    pub(crate) fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\nerror: ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The candidate closest to `input` when it is close enough to be a likely typo.
pub(crate) fn closest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let input_lower = input.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for &c in candidates {
        let d = distance(&input_lower, c);
        let close = d <= (input.chars().count() / 3).max(1)
            || (input.len() >= 3 && (c.starts_with(&input_lower) || input_lower.starts_with(c)));
        if close && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal-string-alignment distance: edits, where swapping two neighbours is one edit.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// ` (did you mean `x`?)` or nothing.
pub(crate) fn did_you_mean(input: &str, candidates: &[&str]) -> String {
    closest(input, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Replace every secret (at least 3 characters long; shorter ones would garble the message)
/// in `message` with `[REDACTED]`.
pub(crate) fn scrub(message: &str, secrets: &[String]) -> String {
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| s.len() >= 3).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = message.to_owned();
    for s in sorted {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "[REDACTED]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["from", "to", "source", "targets", "tags", "platforms"];
        assert_eq!(closest("target", &keys), Some("targets"));
        assert_eq!(closest("tagz", &keys), Some("tags"));
        assert_eq!(closest("platfroms", &keys), Some("platforms"));
        assert_eq!(closest("Source", &keys), Some("source"));
        assert_eq!(closest("registry", &keys), None);
        assert_eq!(closest("x", &keys), None);
        assert_eq!(did_you_mean("sorce", &keys), " (did you mean `source`?)");
        assert_eq!(did_you_mean("zzzzzz", &keys), "");
    }

    #[test]
    fn display_joins_errors_for_the_cli_report() {
        let d = |line, path: &str, message: &str| Diagnostic {
            file: "c.yaml".into(),
            pos: Some(Pos { line, column: 3 }),
            path: path.into(),
            message: message.into(),
        };
        let err = ConfigError::new(vec![d(9, "b", "second"), d(2, "a", "first")], vec![]);
        assert_eq!(
            err.to_string(),
            "c.yaml:2:3: a: first\nerror: c.yaml:9:3: b: second"
        );
        let whole = ConfigError::whole_file("c.yaml", "cannot read".into());
        assert_eq!(whole.to_string(), "c.yaml: cannot read");
    }

    #[test]
    fn scrub_replaces_secrets_longest_first() {
        let secrets = vec![
            "hunter2".to_owned(),
            "hunter2-long".to_owned(),
            "ab".to_owned(),
        ];
        assert_eq!(
            scrub("got \"hunter2-long\" and hunter2, ab", &secrets),
            "got \"[REDACTED]\" and [REDACTED], ab"
        );
    }
}
