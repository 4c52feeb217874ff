//! Token scopes (distribution `docs/spec/auth/scope.md`): `type[(class)]:name:action[,action]*`.
//!
//! Registries write the same need in different orders (distribution 2.8 emits both
//! `repository:a:pull,push` and `repository:a:push,pull`), so [`Scopes`] normalises: one entry
//! per resource, actions sorted. Two equal needs then share one cached token.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Access to one resource: `repository:library/nginx:pull,push`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// The resource type, with its optional class: `repository`, `registry`,
    /// `repository(plugin)`.
    pub resource_type: String,
    /// The resource name: a repository path, which may start with `host:port/`.
    pub name: String,
    /// The actions: `pull`, `push`, `delete`, `*`.
    pub actions: BTreeSet<String>,
}

impl Scope {
    /// A `repository` scope: `Scope::repository("library/nginx", &["pull"])`.
    pub fn repository(name: impl Into<String>, actions: &[&str]) -> Scope {
        Scope {
            resource_type: "repository".to_owned(),
            name: name.into(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    fn resource(&self) -> (String, String) {
        (self.resource_type.clone(), self.name.clone())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.resource_type, self.name)?;
        for (i, action) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(action)?;
        }
        Ok(())
    }
}

impl FromStr for Scope {
    type Err = Error;

    fn from_str(input: &str) -> Result<Scope, Error> {
        let invalid = |reason| Error::InvalidScope {
            input: input.to_owned(),
            reason,
        };
        // The name may contain a `host:port`, so the type ends at the first `:` and the actions
        // start after the last one.
        let (resource_type, rest) = input
            .split_once(':')
            .ok_or_else(|| invalid("expected type:name:action[,action]"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected type:name:action[,action]"))?;
        if !valid_resource_type(resource_type) {
            return Err(invalid(
                "the resource type is letters and digits, with an optional (class)",
            ));
        }
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(invalid(
                "the resource name is empty or contains whitespace or ','",
            ));
        }
        let actions: BTreeSet<String> = actions.split(',').map(str::to_owned).collect();
        if actions.iter().any(|a| !valid_action(a)) {
            return Err(invalid(
                "an action is empty or not letters, digits, '_', '-' or '*'",
            ));
        }
        Ok(Scope {
            resource_type: resource_type.to_owned(),
            name: name.to_owned(),
            actions,
        })
    }
}

fn valid_resource_type(input: &str) -> bool {
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    match input.split_once('(') {
        None => word(input),
        Some((ty, class)) => word(ty) && class.strip_suffix(')').is_some_and(word),
    }
}

fn valid_action(action: &str) -> bool {
    !action.is_empty()
        && action
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'*'))
}

/// A normalised set of scopes: one entry per resource with the union of its actions, in sorted
/// order. Parsed from and displayed as the space-separated list a challenge carries.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes {
    entries: BTreeMap<(String, String), Scope>,
}

impl Scopes {
    /// No scopes (the `/v2/` base check needs none).
    pub fn new() -> Scopes {
        Scopes::default()
    }

    /// Adds `scope`, merging its actions into an existing entry for the same resource.
    pub fn insert(&mut self, scope: Scope) {
        match self.entries.get_mut(&scope.resource()) {
            Some(existing) => existing.actions.extend(scope.actions),
            None => {
                self.entries.insert(scope.resource(), scope);
            }
        }
    }

    /// Every scope in `self` or `other`, merged per resource: what one token for both needs
    /// must cover (a cross-repository mount needs push on the target and pull on the source).
    pub fn union(&self, other: &Scopes) -> Scopes {
        let mut union = self.clone();
        union.extend(other.iter().cloned());
        union
    }

    /// Whether every action on every resource of `other` is also in `self`.
    pub fn contains(&self, other: &Scopes) -> bool {
        other.iter().all(|wanted| {
            self.entries
                .get(&wanted.resource())
                .is_some_and(|held| wanted.actions.is_subset(&held.actions))
        })
    }

    /// The scopes, sorted by resource type and name.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.entries.values()
    }

    /// The number of distinct resources.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no scopes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{scope}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Scopes").field(&self.to_string()).finish()
    }
}

impl FromStr for Scopes {
    type Err = Error;

    /// Parses a space-separated list; an empty string is no scopes.
    fn from_str(input: &str) -> Result<Scopes, Error> {
        input.split_whitespace().map(str::parse).collect()
    }
}

impl From<Scope> for Scopes {
    fn from(scope: Scope) -> Scopes {
        let mut scopes = Scopes::new();
        scopes.insert(scope);
        scopes
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Scopes {
        let mut scopes = Scopes::new();
        scopes.extend(iter);
        scopes
    }
}

impl Extend<Scope> for Scopes {
    fn extend<I: IntoIterator<Item = Scope>>(&mut self, iter: I) {
        for scope in iter {
            self.insert(scope);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parse_table() {
        let cases: [(&str, &str, &str, &[&str]); 8] = [
            (
                "repository:library/nginx:pull",
                "repository",
                "library/nginx",
                &["pull"],
            ),
            (
                "repository:a:push,pull",
                "repository",
                "a",
                &["pull", "push"],
            ),
            (
                "repository:a:pull,push,pull",
                "repository",
                "a",
                &["pull", "push"],
            ),
            ("registry:catalog:*", "registry", "catalog", &["*"]),
            (
                "repository:localhost:5000/app:pull",
                "repository",
                "localhost:5000/app",
                &["pull"],
            ),
            (
                "repository(plugin):vieux/sshfs:pull",
                "repository(plugin)",
                "vieux/sshfs",
                &["pull"],
            ),
            (
                "repository:src/app:delete",
                "repository",
                "src/app",
                &["delete"],
            ),
            (
                "repository:a:metadata-read",
                "repository",
                "a",
                &["metadata-read"],
            ),
        ];
        for (input, resource_type, name, actions) in cases {
            let scope: Scope = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(scope.resource_type, resource_type, "{input}");
            assert_eq!(scope.name, name, "{input}");
            assert_eq!(
                scope.actions.iter().map(String::as_str).collect::<Vec<_>>(),
                actions,
                "{input}"
            );
            assert_eq!(
                scope.to_string().parse::<Scope>().unwrap(),
                scope,
                "round trip {input}"
            );
        }
    }

    #[test]
    fn scope_parse_errors_table() {
        let cases = [
            ("", "expected type:name"),
            ("repository", "expected type:name"),
            ("repository:a", "expected type:name"),
            (":a:pull", "resource type"),
            ("repo sitory:a:pull", "resource type"),
            ("repository(:a:pull", "resource type"),
            ("repository():a:pull", "resource type"),
            ("repository::pull", "resource name"),
            ("repository:a,b:pull", "resource name"),
            ("repository:a:", "action"),
            ("repository:a:pull,,push", "action"),
            ("repository:a:pu ll", "action"),
        ];
        for (input, reason) in cases {
            match input.parse::<Scope>() {
                Err(error @ Error::InvalidScope { .. }) => {
                    let message = error.to_string();
                    assert!(
                        message.starts_with(&format!("invalid scope '{input}': ")),
                        "{message}"
                    );
                    assert!(message.contains(reason), "{input}: {message}");
                }
                other => panic!("{input}: expected InvalidScope, got {other:?}"),
            }
        }
    }

    #[test]
    fn scopes_normalise_table() {
        let cases = [
            ("", ""),
            ("repository:a:push,pull", "repository:a:pull,push"),
            (
                "repository:b:pull   repository:a:push",
                "repository:a:push repository:b:pull",
            ),
            (
                "repository:a:pull repository:a:push",
                "repository:a:pull,push",
            ),
            (
                "repository:dst/app:push,pull repository:src/app:pull",
                "repository:dst/app:pull,push repository:src/app:pull",
            ),
            (
                "registry:catalog:* repository:a:pull",
                "registry:catalog:* repository:a:pull",
            ),
        ];
        for (input, expected) in cases {
            let scopes: Scopes = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(scopes.to_string(), expected, "{input}");
            assert_eq!(expected.parse::<Scopes>().unwrap(), scopes, "{input}");
        }
        assert_eq!(
            "repository:a:push,pull".parse::<Scopes>().unwrap(),
            "repository:a:pull,push".parse::<Scopes>().unwrap()
        );
        assert_ne!(
            "repository:a:pull".parse::<Scopes>().unwrap(),
            "repository:a:pull,push".parse::<Scopes>().unwrap()
        );
        assert!(matches!(
            "repository:a:pull nonsense".parse::<Scopes>(),
            Err(Error::InvalidScope { input, .. }) if input == "nonsense"
        ));
    }

    #[test]
    fn union_and_contains() {
        let pull_a: Scopes = "repository:a:pull".parse().unwrap();
        let push_a: Scopes = Scope::repository("a", &["push"]).into();
        let pull_b: Scopes = "repository:b:pull".parse().unwrap();

        let union = pull_a.union(&push_a).union(&pull_b);
        assert_eq!(
            union.to_string(),
            "repository:a:pull,push repository:b:pull"
        );
        assert_eq!(union.len(), 2);
        assert_eq!(
            union.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );

        let cases = [
            (&union, &pull_a, true),
            (&union, &push_a, true),
            (&union, &union, true),
            (&union, &Scopes::new(), true),
            (&pull_a, &push_a, false),
            (&pull_a, &pull_b, false),
            (&pull_a, &union, false),
            (&Scopes::new(), &pull_a, false),
        ];
        for (held, wanted, expected) in cases {
            assert_eq!(held.contains(wanted), expected, "{held} contains {wanted}");
        }
    }
}
