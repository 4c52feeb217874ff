//! `${VAR}` expansion of the raw configuration text, before YAML parsing (the original's rules,
//! plus an escape and errors for malformed references):
//!
//! | Written          | Becomes                                                        |
//! |------------------|----------------------------------------------------------------|
//! | `${VAR}`         | the value; empty when unset (the name is reported)             |
//! | `${VAR:-text}`   | `text` when VAR is unset or empty                               |
//! | `${VAR:?text}`   | an error naming VAR and saying `text` when VAR is unset or empty |
//! | `$${`            | a literal `${`                                                  |
//! | `$VAR`, `$`      | unchanged                                                       |
//!
//! A reference ends at the first `}` on its line; an unclosed `${` is an error. Defaults are
//! literal text (no nested references). The expansion remembers where each piece of output came
//! from, so positions found in the expanded text are reported in the file as written.

use std::ops::Range;

/// Substrings that make a variable's value secret (matched case-insensitively).
const SECRET_NAME_PARTS: &[&str] = &[
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "TOKEN",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "API_KEY",
];

/// Whether a variable with this name holds a secret.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_PARTS.iter().any(|p| upper.contains(p))
}

/// The expanded text and where its parts came from.
#[derive(Debug, Clone)]
pub(crate) struct Expansion {
    /// The text after expansion.
    pub(crate) text: String,
    /// Pieces of `text`, in order: where each starts in `text` and in the original.
    segments: Vec<Segment>,
    /// Variables referenced as `${VAR}` while unset, first occurrence each, with the byte
    /// offset of the reference in the original text.
    pub(crate) unset: Vec<(String, usize)>,
    /// Byte ranges of `text` that hold the value of a secret variable.
    pub(crate) secret_spans: Vec<Range<usize>>,
    /// The non-empty values substituted for secret variables.
    pub(crate) secret_values: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    expanded: usize,
    original: usize,
    /// Copied unchanged (offsets map one to one), or substituted (every offset maps to the
    /// start of the reference).
    verbatim: bool,
}

/// A malformed or failed reference, at a byte offset of the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpandError {
    /// Byte offset of the `${` in the original text.
    pub(crate) offset: usize,
    /// What is wrong.
    pub(crate) message: String,
}

/// Expand every reference in `input`, looking variables up with `env`. All malformed references
/// are reported, not only the first.
pub(crate) fn expand(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expansion, Vec<ExpandError>> {
    let mut out = Expansion {
        text: String::with_capacity(input.len()),
        segments: Vec::new(),
        unset: Vec::new(),
        secret_spans: Vec::new(),
        secret_values: Vec::new(),
    };
    let mut errors = Vec::new();
    // Start of the pending verbatim run in `input`.
    let mut run_start = 0;
    let mut i = 0;
    while let Some(found) = input[i..].find('$') {
        let at = i + found;
        let rest = &input[at..];
        if rest.starts_with("$${") {
            out.verbatim(&input[run_start..at], run_start);
            out.substituted("${", at);
            i = at + 3;
            run_start = i;
            continue;
        }
        if !rest.starts_with("${") {
            i = at + 1;
            continue;
        }
        let line_end = rest.find('\n').unwrap_or(rest.len());
        let Some(close) = rest[..line_end].find('}') else {
            errors.push(ExpandError {
                offset: at,
                message: "unclosed '${' (write '$${' for a literal '${')".to_owned(),
            });
            i = at + 2;
            continue;
        };
        let inner = &rest[2..close];
        match resolve(inner, env) {
            Ok(resolved) => {
                out.verbatim(&input[run_start..at], run_start);
                let start = out.text.len();
                if resolved.unset && !out.unset.iter().any(|(n, _)| n == resolved.name) {
                    out.unset.push((resolved.name.to_owned(), at));
                }
                out.substituted(&resolved.value, at);
                if is_secret_name(resolved.name) && !resolved.value.is_empty() {
                    out.secret_spans.push(start..out.text.len());
                    if !out.secret_values.contains(&resolved.value) {
                        out.secret_values.push(resolved.value);
                    }
                }
            }
            Err(message) => errors.push(ExpandError {
                offset: at,
                message,
            }),
        }
        i = at + close + 1;
        run_start = i;
    }
    out.verbatim(&input[run_start..], run_start);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

struct Resolved<'a> {
    name: &'a str,
    value: String,
    /// A plain `${VAR}` whose variable is unset.
    unset: bool,
}

/// The value of the reference `${inner}`.
fn resolve<'a>(
    inner: &'a str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved<'a>, String> {
    let name_len = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, op) = inner.split_at(name_len);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        let shown: String = name.chars().take(40).collect();
        return Err(if name.is_empty() {
            "empty variable name in '${…}'".to_owned()
        } else {
            format!(
                "invalid variable name '{shown}': names are letters, digits and '_', not starting with a digit"
            )
        });
    }
    let value = env(name);
    let set_and_non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    if op.is_empty() {
        let unset = value.is_none();
        return Ok(Resolved {
            name,
            value: value.unwrap_or_default(),
            unset,
        });
    }
    if let Some(default) = op.strip_prefix(":-") {
        let value = if set_and_non_empty {
            value.unwrap_or_default()
        } else {
            default.to_owned()
        };
        return Ok(Resolved {
            name,
            value,
            unset: false,
        });
    }
    if let Some(message) = op.strip_prefix(":?") {
        if set_and_non_empty {
            return Ok(Resolved {
                name,
                value: value.unwrap_or_default(),
                unset: false,
            });
        }
        let state = if value.is_some() { "empty" } else { "not set" };
        return Err(if message.is_empty() {
            format!("required variable {name} is {state}")
        } else {
            format!("required variable {name} is {state}: {message}")
        });
    }
    Err(format!(
        "unsupported reference to {name}: write ${{{name}}}, ${{{name}:-default}} or ${{{name}:?message}}"
    ))
}

impl Expansion {
    fn verbatim(&mut self, piece: &str, original: usize) {
        if piece.is_empty() {
            return;
        }
        self.segments.push(Segment {
            expanded: self.text.len(),
            original,
            verbatim: true,
        });
        self.text.push_str(piece);
    }

    fn substituted(&mut self, piece: &str, original: usize) {
        self.segments.push(Segment {
            expanded: self.text.len(),
            original,
            verbatim: false,
        });
        self.text.push_str(piece);
    }

    /// The byte offset in the original text that produced byte `offset` of the expanded text
    /// (the start of the reference, for substituted text).
    pub(crate) fn original_offset(&self, offset: usize) -> usize {
        let i = self.segments.partition_point(|s| s.expanded <= offset);
        let Some(seg) = i.checked_sub(1).map(|i| self.segments[i]) else {
            return offset;
        };
        if seg.verbatim {
            seg.original + (offset - seg.expanded)
        } else {
            seg.original
        }
    }
}

/// Line starts of a text, to turn byte offsets into 1-based line and column (in characters)
/// and back.
#[derive(Debug, Clone)]
pub(crate) struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    /// Index `text`.
    pub(crate) fn new(text: &'a str) -> Lines<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { text, starts }
    }

    /// 1-based line and column of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line, column + 1)
    }

    /// Byte offset of a 1-based line and 0-based column in characters (clamped to the text).
    pub(crate) fn offset(&self, line: usize, column0: usize) -> usize {
        let Some(&start) = self.starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let end = self
            .starts
            .get(line)
            .map_or(self.text.len(), |&next| next - 1);
        self.text[start..end]
            .char_indices()
            .nth(column0)
            .map_or(end, |(i, _)| start + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("ghcr.io".into()),
            "EMPTY" => Some(String::new()),
            "REGISTRY_TOKEN" => Some("s3cr3t".into()),
            "MULTI" => Some("a\nb".into()),
            _ => None,
        }
    }

    fn run(input: &str) -> Result<String, Vec<String>> {
        expand(input, &env).map(|e| e.text).map_err(|es| {
            es.into_iter()
                .map(|e| format!("{}: {}", e.offset, e.message))
                .collect()
        })
    }

    #[test]
    fn expansion_table() {
        let ok = [
            ("url: ${HOST}", "url: ghcr.io"),
            ("url: ${UNSET}", "url: "),
            ("url: ${EMPTY}", "url: "),
            ("url: ${UNSET:-docker.io}", "url: docker.io"),
            ("url: ${EMPTY:-docker.io}", "url: docker.io"),
            ("url: ${HOST:-docker.io}", "url: ghcr.io"),
            ("url: ${UNSET:-}", "url: "),
            ("url: ${HOST:?needed}", "url: ghcr.io"),
            ("a: $${HOST}", "a: ${HOST}"),
            ("a: $$${HOST}", "a: $${HOST}"),
            ("a: $HOST $ $$ $}", "a: $HOST $ $$ $}"),
            ("a: ${HOST}/${HOST}", "a: ghcr.io/ghcr.io"),
            ("a: ${UNSET:-x:y}} b", "a: x:y} b"),
            ("é: ${HOST} ü", "é: ghcr.io ü"),
            ("", ""),
        ];
        for (input, want) in ok {
            assert_eq!(run(input).as_deref(), Ok(want), "{input}");
        }
        let bad = [
            ("a: ${HOST", "3: unclosed '${'"),
            ("a: ${HOST\n}", "3: unclosed '${'"),
            (
                "a: ${UNSET:?set it}",
                "3: required variable UNSET is not set: set it",
            ),
            ("a: ${EMPTY:?}", "3: required variable EMPTY is empty"),
            ("a: ${}", "3: empty variable name"),
            ("a: ${1X}", "3: invalid variable name '1X'"),
            ("a: ${HOST-x}", "3: unsupported reference to HOST"),
            ("a: ${A B}", "3: unsupported reference to A"),
        ];
        for (input, want) in bad {
            let errs = run(input).unwrap_err();
            assert!(errs[0].starts_with(want), "{input}: {errs:?}");
        }
        // Every error is reported, not only the first.
        let errs = run("a: ${X:?one}\nb: ${Y:?two}\nc: ${").unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn unset_and_secret_bookkeeping() {
        let e = expand(
            "a: ${UNSET}\nb: ${UNSET}\nc: ${REGISTRY_TOKEN}\nd: ${OTHER_TOKEN:-dflt}\ne: ${NOPE:-x}",
            &env,
        )
        .unwrap();
        assert_eq!(e.unset, vec![("UNSET".to_owned(), 3)]);
        let spans: Vec<&str> = e.secret_spans.iter().map(|r| &e.text[r.clone()]).collect();
        assert_eq!(spans, ["s3cr3t", "dflt"]);
        assert_eq!(e.secret_values, ["s3cr3t", "dflt"]);
        assert!(is_secret_name("my_Api_Key") && is_secret_name("GH_TOKEN"));
        assert!(!is_secret_name("HOST"));
    }

    #[test]
    fn positions_map_back_to_the_original() {
        let input = "a: ${MULTI}\nb: ${HOST} x\nc: $${y}";
        let e = expand(input, &env).unwrap();
        assert_eq!(e.text, "a: a\nb\nb: ghcr.io x\nc: ${y}");
        let orig = Lines::new(input);
        let at = |needle: &str| {
            let off = e.text.find(needle).unwrap();
            orig.line_col(e.original_offset(off))
        };
        assert_eq!(at("a: "), (1, 1));
        // Inside a substitution: the reference's position.
        assert_eq!(at("b\nb"), (1, 4));
        assert_eq!(at("ghcr"), (2, 4));
        assert_eq!(at(" x"), (2, 11));
        assert_eq!(at("c:"), (3, 1));
        assert_eq!(at("{y}"), (3, 4));
    }

    #[test]
    fn lines_round_trip_with_multibyte_text() {
        let text = "é: 1\n  ü: ß\n";
        let lines = Lines::new(text);
        let off = text.find('ß').unwrap();
        assert_eq!(lines.line_col(off), (2, 6));
        assert_eq!(lines.offset(2, 5), off);
        assert_eq!(lines.offset(9, 0), text.len());
    }
}
