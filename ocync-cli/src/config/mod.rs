//! Configuration files, compatible with the original ocync's YAML: loading (`${VAR}` expansion,
//! YAML, validation of everything before any network request) and the resolved view the engine
//! uses.
//!
//! Loading runs in stages, each reporting every problem it finds with its position in the file
//! as written (`<file>:<line>:<column>: <key path>: <message>`):
//!
//! 1. `${VAR}` expansion of the raw text ([`env`](mod@env)); malformed references and `${VAR:?msg}`
//!    failures stop here.
//! 2. The YAML tree with positions ([`yaml`]) and a check of every key ([`schema`]): unknown,
//!    misplaced, removed and duplicated keys, with suggestions.
//! 3. Deserialisation into the file's types ([`raw`]) with serde: syntax and type errors, at
//!    serde's location.
//! 4. Validation and resolution ([`check`]): values, references between blocks, conflicts.
//!    Problems are found by key path and placed with the tree's index.
//!
//! Messages never contain a secret: values of secret keys and of secret variables are scrubbed.

mod check;
mod env;
mod error;
mod model;
mod raw;
mod redact;
mod schema;
mod units;
mod yaml;

use std::ops::Range;
use std::path::{Path, PathBuf};

pub(crate) use error::{ConfigError, Diagnostic, Pos};
#[allow(
    unused_imports,
    reason = "the resolved view `ocync sync` is being written against"
)]
pub(crate) use model::{
    Artifacts, AuthType, Config, Credentials, Endpoint, Global, Registry, ResolvedMapping, Secret,
};

use env::{Expansion, Lines};
use error::{did_you_mean, scrub};
use yaml::{Index, Node};

/// Load and validate a configuration file, reading `${VAR}`s from the process environment.
pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    load_str(&text, path, |name| std::env::var(name).ok())
}

/// Load and validate configuration text. `origin` names the file in messages, and its directory
/// is where relative paths (`ca_file`, `cache_dir`, `oci:` directories) start; `env` looks up
/// variables.
pub(crate) fn load_str(
    text: &str,
    origin: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let source = Source::new(text, origin, &env)?;
    let warnings = source.unset_warnings();
    let fail = |errors: Vec<Diagnostic>, warnings: Vec<Diagnostic>| {
        Err(ConfigError::new(errors, warnings))
    };

    let tree = yaml::parse(&source.exp.text);
    let root = tree.as_ref().ok().and_then(Option::as_ref);
    if matches!(tree, Ok(None)) {
        return fail(
            vec![
                source.diag(
                    Some(Pos { line: 1, column: 1 }),
                    "",
                    "the file is empty: a configuration has at least `registries` and `mappings`"
                        .to_owned(),
                ),
            ],
            warnings,
        );
    }
    let index = Index::build(root);
    let secrets = source.secrets(root);

    // Keys, then types. When the only type errors are the key problems already reported, the
    // document without those keys is validated too, so that one run reports everything.
    let key_problems = match root {
        Some(root) => schema::check_keys(root, &|offset| source.pos(offset).line),
        None => Vec::new(),
    };
    let mut errors: Vec<Diagnostic> = Vec::new();
    let raw = match serde_norway::from_str::<raw::RawConfig>(&source.exp.text) {
        Ok(raw) => Some(raw),
        Err(e) => {
            let key_error = ["unknown field", "duplicate field", "duplicate entry"]
                .iter()
                .any(|k| e.to_string().contains(k));
            if key_problems.is_empty() || !key_error {
                errors.push(source.serde_diag(&e, &secrets));
                None
            } else {
                without_keys(&source.exp.text, &key_problems)
            }
        }
    };
    for p in key_problems {
        errors.push(source.diag(Some(source.pos(p.offset)), &p.path, p.message));
    }
    let Some(raw) = raw else {
        return fail(errors, warnings);
    };

    // Values and references.
    let checked = check::check(raw, &source.dir);
    let place = |problems: Vec<check::Problem>| -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = problems
            .into_iter()
            .map(|p| {
                let pos = index
                    .locate(&p.path)
                    .map_or(Pos { line: 1, column: 1 }, |o| source.pos(o));
                source.diag(Some(pos), &p.path, scrub(&p.message, &secrets.values))
            })
            .collect();
        out.sort_by_key(|d| d.pos);
        out
    };
    let mut warnings = warnings;
    warnings.extend(place(checked.warnings));
    warnings.sort_by_key(|d| d.pos);
    errors.extend(place(checked.errors));
    if !errors.is_empty() {
        return fail(errors, warnings);
    }
    Ok(Config {
        path: origin.to_path_buf(),
        global: checked.global,
        registries: checked.registries,
        target_groups: checked.target_groups,
        mappings: checked.mappings,
        warnings,
        unset_variables: source.exp.unset.iter().map(|(n, _)| n.clone()).collect(),
    })
}

/// The output of `ocync expand`.
#[derive(Debug, Clone)]
pub(crate) struct Expanded {
    /// The expanded text (redacted unless secrets were asked for).
    pub(crate) text: String,
    /// Unset variables, each at its first reference.
    pub(crate) warnings: Vec<Diagnostic>,
    /// Redaction had to re-serialise the document (comments and formatting are gone).
    pub(crate) reformatted: bool,
}

/// Expand a configuration file's `${VAR}`s from the process environment, for printing.
pub(crate) fn expand(path: &Path, show_secrets: bool) -> Result<Expanded, ConfigError> {
    let text = read(path)?;
    expand_str(&text, path, |name| std::env::var(name).ok(), show_secrets)
}

/// Expand configuration text for printing: secrets redacted unless `show_secrets`.
pub(crate) fn expand_str(
    text: &str,
    origin: &Path,
    env: impl Fn(&str) -> Option<String>,
    show_secrets: bool,
) -> Result<Expanded, ConfigError> {
    let source = Source::new(text, origin, &env)?;
    let warnings = source.unset_warnings();
    if show_secrets {
        return Ok(Expanded {
            text: source.exp.text.clone(),
            warnings,
            reformatted: false,
        });
    }
    let root = match yaml::parse(&source.exp.text) {
        Ok(root) => root,
        Err(e) => {
            let message = format!(
                "cannot redact secrets: the expanded text is not valid YAML ({}); fix it, or use --show-secrets",
                e.message
            );
            let diag = source.diag(Some(source.pos(e.offset)), "", message);
            return Err(ConfigError::new(vec![diag], warnings));
        }
    };
    match redact::redact(&source.exp, root.as_ref()) {
        Ok(r) => Ok(Expanded {
            text: r.text,
            warnings,
            reformatted: r.reformatted,
        }),
        Err(message) => Err(ConfigError::new(
            vec![source.diag(None, "", message)],
            warnings,
        )),
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError::whole_file(
            &path.display().to_string(),
            format!("cannot read the configuration file: {e}"),
        )
    })
}

/// The file: its text as written, the expansion, and how to report positions.
struct Source<'a> {
    file: String,
    dir: PathBuf,
    original: Lines<'a>,
    exp: Expansion,
}

/// Secret values and where secrets are in the expanded text, to keep them out of messages.
struct Secrets {
    values: Vec<String>,
    /// Starts of secret scalars and ranges of secret variable values.
    places: Vec<Range<usize>>,
}

impl<'a> Source<'a> {
    fn new(
        text: &'a str,
        origin: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Source<'a>, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let file = origin.display().to_string();
        let dir = std::path::absolute(origin)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let original = Lines::new(text);
        match env::expand(text, env) {
            Ok(exp) => Ok(Source {
                file,
                dir,
                original,
                exp,
            }),
            Err(errors) => {
                let diags = errors
                    .into_iter()
                    .map(|e| {
                        let (line, column) = original.line_col(e.offset);
                        Diagnostic {
                            file: file.clone(),
                            pos: Some(Pos { line, column }),
                            path: String::new(),
                            message: e.message,
                        }
                    })
                    .collect();
                Err(ConfigError::new(diags, Vec::new()))
            }
        }
    }

    /// The position in the file as written of a byte offset in the expanded text.
    fn pos(&self, expanded: usize) -> Pos {
        let (line, column) = self.original.line_col(self.exp.original_offset(expanded));
        Pos { line, column }
    }

    fn diag(&self, pos: Option<Pos>, path: &str, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            pos,
            path: path.to_owned(),
            message,
        }
    }

    fn unset_warnings(&self) -> Vec<Diagnostic> {
        self.exp
            .unset
            .iter()
            .map(|(name, offset)| {
                let (line, column) = self.original.line_col(*offset);
                self.diag(
                    Some(Pos { line, column }),
                    "",
                    format!(
                        "variable {name} is not set, so `${{{name}}}` expands to nothing (write `${{{name}:-default}}` or `${{{name}:?message}}` to decide)"
                    ),
                )
            })
            .collect()
    }

    fn secrets(&self, root: Option<&Node>) -> Secrets {
        let mut values = self.exp.secret_values.clone();
        let mut places = self.exp.secret_spans.clone();
        if let Some(root) = root {
            for node in redact::secret_scalars(root) {
                if let Some(v) = node.as_str() {
                    values.push(v.to_owned());
                    places.push(node.start..node.start + v.len().max(1));
                }
            }
        }
        Secrets { values, places }
    }

    /// A serde error as a diagnostic: serde's location mapped to the file as written, its path
    /// split off, unknown keys and values given suggestions, secrets scrubbed.
    fn serde_diag(&self, e: &serde_norway::Error, secrets: &Secrets) -> Diagnostic {
        let mut text = e.to_string();
        let mut pos = None;
        let mut offset = None;
        if let Some(loc) = e.location() {
            text = text.replacen(
                &format!(" at line {} column {}", loc.line(), loc.column()),
                "",
                1,
            );
            let lines = Lines::new(&self.exp.text);
            let o = lines.offset(loc.line(), loc.column().saturating_sub(1));
            offset = Some(o);
            pos = Some(self.pos(o));
        }
        let (path, message) = match text.split_once(": ") {
            Some((p, m)) if !p.is_empty() && !p.contains(char::is_whitespace) => {
                (p.to_owned(), m.to_owned())
            }
            _ => (String::new(), text),
        };
        let mut message = suggest(&message);
        if offset.is_some_and(|o| secrets.places.iter().any(|r| r.contains(&o))) {
            message = redact_quoted(&message);
        }
        self.diag(
            pos.or(Some(Pos { line: 1, column: 1 })),
            &path,
            scrub(&message, &secrets.values),
        )
    }
}

/// The file's types from `text` without the keys at `problems` (unknown, removed, duplicated),
/// or `None` when that still fails.
fn without_keys(text: &str, problems: &[schema::KeyProblem]) -> Option<raw::RawConfig> {
    let mut value: serde_norway::Value = serde_norway::from_str(text).ok()?;
    for p in problems {
        remove_path(&mut value, &p.path)?;
    }
    serde_norway::from_value(value).ok()
}

/// Remove the entry at a key path (`mappings[2].tagz`); `None` when the path cannot be followed.
fn remove_path(value: &mut serde_norway::Value, path: &str) -> Option<()> {
    let mut segments: Vec<(Option<&str>, Option<usize>)> = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            segments.push((Some(key), None));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let (n, after) = inner.split_once(']')?;
            segments.push((None, Some(n.parse().ok()?)));
            rest = after;
        }
    }
    let (last, parents) = segments.split_last()?;
    let mut at = value;
    for segment in parents {
        at = match segment {
            (Some(key), _) => at.get_mut(*key)?,
            (None, Some(i)) => at.get_mut(*i)?,
            _ => return None,
        };
    }
    match last {
        (Some(key), _) => at.as_mapping_mut()?.remove(*key).map(|_| ()),
        (None, Some(i)) => {
            let seq = at.as_sequence_mut()?;
            (*i < seq.len()).then(|| {
                seq.remove(*i);
            })
        }
        _ => None,
    }
}

/// serde's "unknown field/variant `x`, expected one of `a`, `b`" in our words, with the closest
/// valid name.
fn suggest(message: &str) -> String {
    for (prefix, noun) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        let Some(after) = message.strip_prefix(prefix) else {
            continue;
        };
        let Some((name, tail)) = after.split_once('`') else {
            continue;
        };
        let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
        let mut out = format!("unknown {noun} `{name}`{}", did_you_mean(name, &expected));
        if !expected.is_empty() {
            out.push_str(&format!("; expected one of: {}", expected.join(", ")));
        }
        return out;
    }
    message
        .replace("expected u64", "expected a whole number")
        .replace("unit value", "empty value")
}

/// Replace what serde quoted from the input (`"…"`, `` `…` ``) with `[REDACTED]`.
fn redact_quoted(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(['"', '`']) {
        let quote = &rest[i..=i];
        let Some(len) = rest[i + 1..].find(quote) else {
            break;
        };
        out.push_str(&rest[..=i]);
        out.push_str("[REDACTED]");
        out.push_str(quote);
        rest = &rest[i + 1 + len + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
