//! Redaction for `ocync expand`: values of secret keys (`password`, `token`, …) and values of
//! secret variables (`${REGISTRY_TOKEN}`) become `[REDACTED]`.
//!
//! The text is edited in place, so formatting and comments stay. The result is parsed again and
//! checked: every secret value must read `[REDACTED]` and no secret may remain anywhere. If that
//! fails (a secret in a multi-line plain scalar, a variable expanding to several YAML tokens),
//! the document is re-serialised from a parsed value instead (comments are lost), and checked
//! the same way; if even that leaks, redaction is refused.

use std::collections::HashMap;
use std::ops::Range;

use serde_norway::Value;
use yaml_rust2::scanner::TScalarStyle;

use super::env::Expansion;
use super::yaml::{self, Kind, Node};

/// Keys whose values are secret wherever they appear (compared case-insensitively).
pub(crate) const SECRET_KEYS: &[&str] = &[
    "password",
    "token",
    "identitytoken",
    "secret",
    "client_secret",
];

/// Secrets shorter than this are not searched for in free text (they would match everywhere);
/// they are still redacted where they are, as values.
const MIN_SEARCHED_LEN: usize = 4;

const REDACTED: &str = "[REDACTED]";

fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// The non-empty scalars that are secret: values (at any depth) of secret keys, including
/// anchored nodes that a secret key refers to with an alias.
pub(crate) fn secret_scalars(root: &Node) -> Vec<&Node> {
    let mut anchors = HashMap::new();
    let mut out = Vec::new();
    collect(root, false, &mut anchors, &mut out);
    out
}

fn collect<'a>(
    node: &'a Node,
    secret: bool,
    anchors: &mut HashMap<usize, &'a Node>,
    out: &mut Vec<&'a Node>,
) {
    if node.anchor != 0 {
        anchors.insert(node.anchor, node);
    }
    match &node.kind {
        Kind::Scalar { value, .. } => {
            if secret && !value.is_empty() {
                out.push(node);
            }
        }
        Kind::Seq(items) => {
            for item in items {
                collect(item, secret, anchors, out);
            }
        }
        Kind::Map(entries) => {
            for (key, value) in entries {
                let value_secret = secret || key.as_str().is_some_and(is_secret_key);
                collect(key, secret, anchors, out);
                collect(value, value_secret, anchors, out);
            }
        }
        Kind::Alias(id) => {
            if secret && let Some(target) = anchors.get(id).copied() {
                let mut inner = HashMap::new();
                collect(target, true, &mut inner, out);
            }
        }
    }
}

/// The redacted text, and whether it had to be re-serialised (formatting and comments lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redacted {
    /// The text to print.
    pub(crate) text: String,
    /// Re-serialised rather than edited.
    pub(crate) reformatted: bool,
}

/// Redact the expanded text whose document is `root`.
pub(crate) fn redact(exp: &Expansion, root: Option<&Node>) -> Result<Redacted, String> {
    let text = &exp.text;
    let Some(root) = root else {
        return Ok(Redacted {
            text: text.clone(),
            reformatted: false,
        });
    };
    let secrets: Vec<&Node> = secret_scalars(root);
    let mut needles: Vec<String> = exp.secret_values.clone();
    needles.extend(secrets.iter().filter_map(|n| n.as_str().map(str::to_owned)));
    needles.retain(|s| s.len() >= MIN_SEARCHED_LEN);

    if let Some(edited) = edit_in_place(text, root, &secrets, &exp.secret_spans)
        && verified(&edited, &needles)
    {
        return Ok(Redacted {
            text: edited,
            reformatted: false,
        });
    }
    let mut all_secrets = exp.secret_values.clone();
    all_secrets.extend(secrets.iter().filter_map(|n| n.as_str().map(str::to_owned)));
    let reserialised = reserialise(text, &all_secrets)?;
    if verified(&reserialised, &needles) {
        Ok(Redacted {
            text: reserialised,
            reformatted: true,
        })
    } else {
        Err(
            "cannot redact the secrets of this file reliably; use --show-secrets to print it as is"
                .to_owned(),
        )
    }
}

/// Every secret key's value reads `[REDACTED]` and no secret is left in the text.
fn verified(text: &str, needles: &[String]) -> bool {
    let Ok(root) = yaml::parse(text) else {
        return false;
    };
    let values_redacted = root.as_ref().is_none_or(|root| {
        secret_scalars(root)
            .iter()
            .all(|n| n.as_str().map(|v| v.trim_end_matches('\n')) == Some(REDACTED))
    });
    values_redacted && !needles.iter().any(|s| text.contains(s.as_str()))
}

fn edit_in_place(
    text: &str,
    root: &Node,
    secrets: &[&Node],
    spans: &[Range<usize>],
) -> Option<String> {
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let mut whole: Vec<Range<usize>> = Vec::new();
    for node in secrets {
        let Kind::Scalar { style, .. } = &node.kind else {
            continue;
        };
        let range = scalar_range(text, node)?;
        let replacement = match style {
            TScalarStyle::SingleQuoted => format!("'{REDACTED}'"),
            TScalarStyle::Plain | TScalarStyle::DoubleQuoted => format!("\"{REDACTED}\""),
            TScalarStyle::Literal | TScalarStyle::Folded => REDACTED.to_owned(),
        };
        if !whole.contains(&range) {
            whole.push(range.clone());
            edits.push((range, replacement));
        }
    }

    // Secret variables: inside a scalar, rewrite that scalar; elsewhere (comments), replace
    // the text itself.
    let mut scalars = Vec::new();
    all_scalars(root, &mut scalars);
    /// A scalar holding secret variables: its range, style and the variables' ranges.
    type Holder = (Range<usize>, TScalarStyle, Vec<Range<usize>>);
    let mut by_scalar: HashMap<usize, Holder> = HashMap::new();
    for span in spans {
        if whole
            .iter()
            .any(|r| r.start <= span.start && span.end <= r.end)
        {
            continue;
        }
        let containing = scalars.iter().find_map(|node| {
            let Kind::Scalar { style, .. } = &node.kind else {
                return None;
            };
            let r = scalar_range(text, node)?;
            (r.start <= span.start && span.end <= r.end).then_some((r, *style))
        });
        match containing {
            Some((r, style)) => by_scalar
                .entry(r.start)
                .or_insert_with(|| (r, style, Vec::new()))
                .2
                .push(span.clone()),
            None => edits.push((span.clone(), REDACTED.to_owned())),
        }
    }
    for (_, (range, style, mut inner)) in by_scalar {
        inner.sort_by_key(|r| r.start);
        let mut rewritten = String::new();
        let mut at = range.start;
        for span in inner {
            rewritten.push_str(&text[at..span.start]);
            rewritten.push_str(REDACTED);
            at = span.end;
        }
        rewritten.push_str(&text[at..range.end]);
        if style == TScalarStyle::Plain && rewritten.starts_with(REDACTED) {
            rewritten = format!("'{}'", rewritten.replace('\'', "''"));
        }
        edits.push((range, rewritten));
    }

    edits.sort_by_key(|(r, _)| r.start);
    if edits.windows(2).any(|w| w[0].0.end > w[1].0.start) {
        return None;
    }
    let mut out = text.to_owned();
    for (range, replacement) in edits.iter().rev() {
        out.replace_range(range.clone(), replacement);
    }
    Some(out)
}

fn all_scalars<'a>(node: &'a Node, out: &mut Vec<&'a Node>) {
    match &node.kind {
        Kind::Scalar { .. } => out.push(node),
        Kind::Seq(items) => items.iter().for_each(|n| all_scalars(n, out)),
        Kind::Map(entries) => {
            for (k, v) in entries {
                all_scalars(k, out);
                all_scalars(v, out);
            }
        }
        Kind::Alias(_) => {}
    }
}

/// The bytes of `text` a scalar was written as, when they can be found reliably.
fn scalar_range(text: &str, node: &Node) -> Option<Range<usize>> {
    let Kind::Scalar { value, style, flow } = &node.kind else {
        return None;
    };
    let start = node.start;
    let rest = text.get(start..)?;
    match style {
        TScalarStyle::SingleQuoted => {
            let body = rest.strip_prefix('\'')?;
            let mut i = 0;
            loop {
                let q = body[i..].find('\'')? + i;
                if body[q + 1..].starts_with('\'') {
                    i = q + 2;
                } else {
                    return Some(start..start + 1 + q + 1);
                }
            }
        }
        TScalarStyle::DoubleQuoted => {
            let body = rest.strip_prefix('"')?;
            let mut chars = body.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => return Some(start..start + 1 + i + 1),
                    _ => {}
                }
            }
            None
        }
        TScalarStyle::Plain => {
            let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
            let mut end = line.len();
            for stop in [" #", "\t#"] {
                if let Some(i) = line.find(stop) {
                    end = end.min(i);
                }
            }
            if *flow && let Some(i) = line.find([',', ']', '}']) {
                end = end.min(i);
            }
            let written = line[..end].trim_end();
            (written == value).then(|| start..start + written.len())
        }
        TScalarStyle::Literal | TScalarStyle::Folded => {
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let indent = &text[line_start..start];
            if !indent.bytes().all(|b| b == b' ') || indent.is_empty() {
                return None;
            }
            let mut end = start + rest.find('\n').unwrap_or(rest.len());
            let mut at = end;
            while at < text.len() {
                let next_start = at + 1;
                let next_end = text[next_start..]
                    .find('\n')
                    .map_or(text.len(), |i| next_start + i);
                let line = &text[next_start..next_end];
                if line.trim().is_empty() {
                    at = next_end;
                    continue;
                }
                if !line.starts_with(indent) {
                    break;
                }
                end = next_end;
                at = next_end;
            }
            Some(start..end.max(start))
        }
    }
}

/// Parse, redact as values, serialise.
fn reserialise(text: &str, secrets: &[String]) -> Result<String, String> {
    let mut value: Value = serde_norway::from_str(text).map_err(|_| {
        "cannot redact the secrets: the text is not valid YAML; use --show-secrets to print it as is"
            .to_owned()
    })?;
    redact_value(&mut value, secrets);
    serde_norway::to_string(&value).map_err(|e| format!("cannot print the redacted text: {e}"))
}

fn redact_value(value: &mut Value, secrets: &[String]) {
    match value {
        Value::String(s) => {
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                if s == secret || (secret.len() >= MIN_SEARCHED_LEN && s.contains(secret.as_str()))
                {
                    *s = s.replace(secret.as_str(), REDACTED);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| redact_value(v, secrets)),
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                if k.as_str().is_some_and(is_secret_key) {
                    *v = Value::String(REDACTED.to_owned());
                } else {
                    redact_value(v, secrets);
                }
            }
        }
        Value::Tagged(tagged) => redact_value(&mut tagged.value, secrets),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::env::expand;
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "REG_PASSWORD" => Some("hunter2-pw".into()),
            "GH_TOKEN" => Some("ghp_abcdef".into()),
            "HOST" => Some("ghcr.io".into()),
            _ => None,
        }
    }

    fn run(input: &str) -> Redacted {
        let exp = expand(input, &env).unwrap();
        let root = yaml::parse(&exp.text).unwrap();
        redact(&exp, root.as_ref()).unwrap()
    }

    #[test]
    fn keeps_formatting_and_comments() {
        let input = "\
# registries (comment kept) ${HOST}
registries:
  a:
    url: ${HOST}   # trailing comment
    auth_type: basic
    credentials:
      username: me
      password: ${REG_PASSWORD}
  b: { url: x.io, auth_type: static_token, token: 'lit''eral' }
  c:
    url: y.io
    token: \"quoted \\\" ${GH_TOKEN} secret\"
notes: https://${GH_TOKEN}@example.com
shared: &pw aliased-secret
other:
  password: *pw
block:
  secret: |
    line one
    line two
  after: kept
";
        let out = run(input);
        assert!(!out.reformatted, "{}", out.text);
        let want = "\
# registries (comment kept) ghcr.io
registries:
  a:
    url: ghcr.io   # trailing comment
    auth_type: basic
    credentials:
      username: me
      password: \"[REDACTED]\"
  b: { url: x.io, auth_type: static_token, token: '[REDACTED]' }
  c:
    url: y.io
    token: \"[REDACTED]\"
notes: https://[REDACTED]@example.com
shared: &pw \"[REDACTED]\"
other:
  password: *pw
block:
  secret: |
    [REDACTED]
  after: kept
";
        assert_eq!(out.text, want);
    }

    #[test]
    fn secret_variables_outside_secret_keys() {
        let out = run("a: ${GH_TOKEN}\nb: [x, '${GH_TOKEN}']\n# ${REG_PASSWORD}\n");
        assert_eq!(
            out.text,
            "a: '[REDACTED]'\nb: [x, '[REDACTED]']\n# [REDACTED]\n"
        );
        assert!(!out.reformatted);
    }

    #[test]
    fn falls_back_to_reserialising() {
        // A multi-line plain scalar cannot be located reliably in the text.
        let out = run("registries:\n  a:\n    password: first\n      second\n    url: x\n");
        assert!(out.reformatted);
        assert!(
            !out.text.contains("first") && !out.text.contains("second"),
            "{}",
            out.text
        );
        assert!(out.text.contains("password: '[REDACTED]'"), "{}", out.text);
        // A variable that expands to YAML structure.
        let exp = expand("a: ${GH_TOKEN}\n", &|n: &str| {
            (n == "GH_TOKEN").then(|| "ghp_secretvalue\nb: 1".to_owned())
        })
        .unwrap();
        let root = yaml::parse(&exp.text).unwrap();
        let out = redact(&exp, root.as_ref());
        assert!(
            out.as_ref()
                .is_ok_and(|r| !r.text.contains("ghp_secretvalue")),
            "{out:?}"
        );
    }
}
