//! The key check that runs on the whole document before deserialisation, so that every unknown,
//! misplaced, removed or duplicated key is reported at once (serde stops at the first), each
//! with the keys valid at that place and the closest one.

use std::collections::HashMap;

use super::error::did_you_mean;
use super::raw::{
    ARTIFACTS_KEYS, CREDENTIALS_KEYS, DEFAULTS_KEYS, GLOBAL_KEYS, MAPPING_KEYS, RATE_KEYS,
    RATE_LIMITS_KEYS, REGISTRY_KEYS, ROOT_KEYS, TAGS_KEYS,
};
use super::yaml::{Kind, Node, join};

/// A key problem at a byte offset of the expanded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyProblem {
    /// Byte offset of the key.
    pub(crate) offset: usize,
    /// Key path of the key.
    pub(crate) path: String,
    /// What is wrong.
    pub(crate) message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Root,
    Global,
    Registries,
    Registry,
    Credentials,
    RateLimits,
    Rate,
    Defaults,
    Mappings,
    Mapping,
    Tags,
    Artifacts,
    /// Values without a key schema (target groups, platform lists, …).
    Free,
}

impl Block {
    fn keys(self) -> Option<&'static [&'static str]> {
        Some(match self {
            Block::Root => ROOT_KEYS,
            Block::Global => GLOBAL_KEYS,
            Block::Registry => REGISTRY_KEYS,
            Block::Credentials => CREDENTIALS_KEYS,
            Block::RateLimits => RATE_LIMITS_KEYS,
            Block::Rate => RATE_KEYS,
            Block::Defaults => DEFAULTS_KEYS,
            Block::Mapping => MAPPING_KEYS,
            Block::Tags => TAGS_KEYS,
            Block::Artifacts => ARTIFACTS_KEYS,
            Block::Registries | Block::Mappings | Block::Free => return None,
        })
    }

    fn place(self) -> &'static str {
        match self {
            Block::Root => "at the top level",
            Block::Global => "in `global`",
            Block::Registry => "in a registry",
            Block::Credentials => "in `credentials`",
            Block::RateLimits => "in `rate_limits` (action groups)",
            Block::Rate => "in a rate",
            Block::Defaults => "in `defaults`",
            Block::Mapping => "in a mapping",
            Block::Tags => "in a tags block",
            Block::Artifacts => "in an artifacts block",
            Block::Registries | Block::Mappings | Block::Free => "here",
        }
    }

    fn child(self, key: &str) -> Block {
        match (self, key) {
            (Block::Root, "global") => Block::Global,
            (Block::Root, "registries") => Block::Registries,
            (Block::Root, "defaults") => Block::Defaults,
            (Block::Root, "mappings") => Block::Mappings,
            (Block::Registries, _) => Block::Registry,
            (Block::Registry, "credentials") => Block::Credentials,
            (Block::Registry, "rate_limits") => Block::RateLimits,
            (Block::RateLimits, _) => Block::Rate,
            (Block::Defaults | Block::Mapping, "tags") => Block::Tags,
            (Block::Defaults | Block::Mapping, "artifacts") => Block::Artifacts,
            _ => Block::Free,
        }
    }
}

/// Where else a key is valid, for a misplaced key (`auth_type` in a mapping).
fn home(key: &str, here: Block) -> Option<&'static str> {
    let homes = [
        (Block::Registry, "a registry (registries.<alias>)"),
        (Block::Global, "`global`"),
        (Block::Mapping, "a mapping"),
        (Block::Tags, "a tags block"),
        (Block::Artifacts, "an artifacts block"),
        (Block::Root, "the top level"),
    ];
    if here.keys().is_some_and(|k| k.contains(&key)) {
        return None;
    }
    homes
        .iter()
        .find(|(b, _)| b.keys().is_some_and(|k| k.contains(&key)))
        .map(|(_, name)| *name)
}

/// Check every key of the document; `line_of` turns an offset into a line number for messages
/// that point at a second place.
pub(crate) fn check_keys(root: &Node, line_of: &dyn Fn(usize) -> usize) -> Vec<KeyProblem> {
    let mut out = Vec::new();
    walk(root, Block::Root, "", line_of, &mut out);
    out
}

fn walk(
    node: &Node,
    block: Block,
    path: &str,
    line_of: &dyn Fn(usize) -> usize,
    out: &mut Vec<KeyProblem>,
) {
    match &node.kind {
        Kind::Map(entries) => {
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for (key, value) in entries {
                let Some(name) = key.as_str() else { continue };
                let key_path = join(path, name);
                if let Some(&first) = seen.get(name) {
                    out.push(KeyProblem {
                        offset: key.start,
                        path: key_path,
                        message: format!(
                            "duplicate key `{name}` (also on line {})",
                            line_of(first)
                        ),
                    });
                    continue;
                }
                seen.insert(name, key.start);
                if let Some(valid) = block.keys()
                    && !valid.contains(&name)
                {
                    out.push(KeyProblem {
                        offset: key.start,
                        path: key_path,
                        message: unknown_key(name, block, valid),
                    });
                    continue;
                }
                walk(value, block.child(name), &key_path, line_of, out);
            }
        }
        Kind::Seq(items) => {
            let item_block = if block == Block::Mappings {
                Block::Mapping
            } else {
                Block::Free
            };
            for (i, item) in items.iter().enumerate() {
                walk(item, item_block, &format!("{path}[{i}]"), line_of, out);
            }
        }
        Kind::Scalar { .. } | Kind::Alias(_) => {}
    }
}

fn unknown_key(name: &str, block: Block, valid: &[&str]) -> String {
    if block == Block::Tags && name == "semver_prerelease" {
        return "`semver_prerelease` was removed: list the pre-release tags or globs to keep under `include` instead (e.g. include: ['*-rc*'])".to_owned();
    }
    if name == "<<" {
        return "YAML merge keys (`<<`) are not supported: repeat the keys, or put shared settings under `defaults`".to_owned();
    }
    let mut message = format!("unknown key `{name}`");
    match home(name, block) {
        Some(home) => message.push_str(&format!(" (`{name}` belongs in {home})")),
        None => message.push_str(&did_you_mean(name, valid)),
    }
    message.push_str(&format!(
        "; valid keys {}: {}",
        block.place(),
        valid.join(", ")
    ));
    message
}

#[cfg(test)]
mod tests {
    use super::super::env::Lines;
    use super::super::yaml::parse;
    use super::*;

    fn problems(text: &str) -> Vec<(String, (usize, usize), String)> {
        let lines = Lines::new(text);
        let root = parse(text).unwrap().unwrap();
        check_keys(&root, &|o| lines.line_col(o).0)
            .into_iter()
            .map(|p| (p.path, lines.line_col(p.offset), p.message))
            .collect()
    }

    #[test]
    fn every_unknown_key_is_reported_with_a_suggestion() {
        let got = problems(
            "registries:\n  src:\n    url: x\n    auth: basic\nmappings:\n  - from: a\n    target: b\n    tags:\n      globs: ['*']\n      semver_prerelease: true\n  - from: c\n    auth_type: ecr\n",
        );
        let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "registries.src.auth",
                "mappings[0].target",
                "mappings[0].tags.globs",
                "mappings[0].tags.semver_prerelease",
                "mappings[1].auth_type",
            ]
        );
        assert_eq!(got[1].1, (7, 5));
        assert!(got[1].2.contains("did you mean `targets`?"), "{}", got[1].2);
        assert!(
            got[1]
                .2
                .contains("valid keys in a mapping: from, to, source, targets")
        );
        assert!(
            got[0].2.contains("did you mean `auth_type`?"),
            "{}",
            got[0].2
        );
        assert!(got[2].2.contains("did you mean `glob`?"));
        assert!(got[3].2.contains("use") || got[3].2.contains("`include`"));
        assert!(got[4].2.contains("belongs in a registry"), "{}", got[4].2);
    }

    #[test]
    fn duplicates_and_merge_keys() {
        let got = problems(
            "registries:\n  a: {url: x}\n  a: {url: y}\nmappings:\n  - &m {from: a, from: b}\n  - <<: *m\n",
        );
        let msgs: Vec<&str> = got.iter().map(|(_, _, m)| m.as_str()).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(msgs[0].contains("duplicate key `a` (also on line 2)"));
        assert!(msgs[1].contains("duplicate key `from`"));
        assert!(msgs[2].contains("merge keys"));
        // Free-form blocks (aliases, group names) accept any key.
        assert!(
            problems("target_groups:\n  anything: [a]\nregistries:\n  whatever: {url: x}\n")
                .is_empty()
        );
    }
}
