//! Tag selection: which of a repository's tags a mapping copies (the `tags:` block of the
//! configuration), compatible with the original ocync's rules.
//!
//! A [`TagFilter`] merges a mapping's [`TagRules`] with the defaults' and runs the pipeline of
//! the original: literal `include`s set aside, `glob`, `semver` range, excludes (hard mapping
//! tier, soft defaults and built-in tiers), `sort`, `latest`, then the literal includes put
//! first. Every dropped tag carries its [`DropReason`], so a dry run can explain the selection.
//!
//! Deliberate differences from the original (ocync-reference.md 1.3, 1.4, 2.1):
//! - a mapping may have no `tags` block at all: every tag is selected, subject to the built-in
//!   soft excludes;
//! - referrers-tag-schema indexes (`sha256-<64 hex>`, `sha512-<hex>`) are always dropped, even
//!   when listed in `include`: the engine copies them with their subject's referrers;
//! - version ranges also accept `^x.y`, `~x.y` (Cargo meaning) and `||` between comma-joined
//!   groups;
//! - ties in `sort: semver` (`1.0` and `1.0.0`, `rc1` and `rc.1`) are broken by descending byte
//!   order instead of the registry's listing order, so `latest` picks the same tags on every run.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use ocync_core::Digest;

use crate::error::{Error, ErrorKind};

/// One `tags:` block (a mapping's, or the defaults').
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TagRules {
    /// Globs a tag must match one of (empty: every tag).
    pub glob: Vec<String>,
    /// Literal tags always kept (except by a hard exclude); glob patterns here rescue matching
    /// tags from `glob` and soft excludes.
    pub include: Vec<String>,
    /// A version range the tag must satisfy (`>=1.2, <2`).
    pub semver: Option<String>,
    /// Globs of tags to drop.
    pub exclude: Vec<String>,
    /// Order of the selection.
    pub sort: Option<TagSort>,
    /// Keep only the first N after sorting (needs `sort` in the same block).
    pub latest: Option<usize>,
    /// Fail the mapping when fewer tags are selected.
    pub min_tags: Option<usize>,
    /// Tags matching this glob never change once copied.
    pub immutable_tags: Option<String>,
}

/// How selected tags are ordered (both descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TagSort {
    /// By version, newest first.
    Semver,
    /// By byte order, last first.
    Alpha,
}

impl TagSort {
    fn as_str(self) -> &'static str {
        match self {
            TagSort::Semver => "semver",
            TagSort::Alpha => "alpha",
        }
    }
}

/// The soft tier every filtered selection applies (case-insensitive): common pre-release
/// markers. `*-pre*` also hits `-preview` and `-premium`, as in the original.
const BUILTIN_EXCLUDES: [&str; 6] = [
    "*-rc*",
    "*-alpha*",
    "*-beta*",
    "*-pre*",
    "*-snapshot*",
    "*-nightly*",
];

/// Shown with every invalid range.
const RANGE_EXAMPLE: &str = "write e.g. '>=1.25, <2' or '^1.4 || ~2.0'";

/// Why a tag was not selected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// Matched none of the `glob` patterns (nor a glob `include`).
    Glob,
    /// Not a version, or a version outside the `semver` range.
    Semver,
    /// Matched this pattern of the mapping's `exclude` (hard tier: `include` cannot rescue).
    Exclude(String),
    /// Matched this pattern of the defaults' `exclude` (soft tier).
    DefaultExclude(String),
    /// Matched this built-in pre-release pattern (soft tier).
    BuiltinExclude(String),
    /// Sorted below the first `latest` tags.
    Latest,
    /// A referrers-tag-schema index (`sha256-<hex>`), copied with its subject's referrers.
    ReferrersIndex,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Glob => f.write_str("not matched by glob"),
            DropReason::Semver => f.write_str("outside version range"),
            DropReason::Exclude(pattern) => write!(f, "excluded by '{pattern}'"),
            DropReason::DefaultExclude(pattern) => write!(f, "excluded by defaults '{pattern}'"),
            DropReason::BuiltinExclude(pattern) => write!(f, "excluded by built-in '{pattern}'"),
            DropReason::Latest => f.write_str("beyond latest"),
            DropReason::ReferrersIndex => {
                f.write_str("referrers index, copied with its subject's referrers")
            }
        }
    }
}

/// The outcome of [`TagFilter::select`]: every input tag is in exactly one of the two lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Selected tags: literal includes first (in `include` order), then the pipeline's (sorted
    /// when `sort` is set, else in registry order).
    pub kept: Vec<String>,
    /// Dropped tags with the reason, in pipeline-stage order.
    pub dropped: Vec<(String, DropReason)>,
}

/// A merged and compiled tag filter for one mapping.
#[derive(Debug, Clone)]
pub struct TagFilter {
    /// The exact-tag fast path (`glob` of literals only, nothing else).
    exact: Option<Vec<String>>,
    /// `None`: every tag passes the glob stage.
    glob: Option<Patterns>,
    /// `include` as configured, for [`TagFilter::describe`].
    include: Vec<String>,
    /// Literal `include`s, deduplicated, in configured order.
    literal_includes: Vec<String>,
    /// Glob `include`s.
    include_globs: Patterns,
    /// The range as written, and parsed.
    semver: Option<(String, VersionRange)>,
    /// The mapping's `exclude` (hard tier).
    exclude: Patterns,
    /// The defaults' `exclude` (soft tier).
    defaults_exclude: Patterns,
    /// The built-in soft tier (empty on the exact-tag path, which skips it as the original does).
    builtin_exclude: Patterns,
    sort: Option<TagSort>,
    latest: Option<usize>,
    min_tags: Option<usize>,
    immutable: Option<Patterns>,
}

impl TagFilter {
    /// Merge a mapping's rules with the defaults' (mapping wins per field; `exclude`: mapping
    /// list = hard tier, defaults list = soft tier; built-in soft tier always) and compile.
    ///
    /// `None` for both selects every tag (subject to the built-in soft excludes). Fails with
    /// [`ErrorKind::InvalidFilter`] on an invalid glob or range, or on `latest` without `sort`
    /// in the same block (each block is validated on its own, as in the original).
    pub fn new(rules: Option<&TagRules>, defaults: Option<&TagRules>) -> Result<TagFilter, Error> {
        for (block, origin) in [(rules, Origin::Mapping), (defaults, Origin::Defaults)] {
            if let Some(block) = block
                && let Some(latest) = block.latest
                && block.sort.is_none()
            {
                return Err(invalid(
                    "latest",
                    latest.to_string(),
                    format!(
                        "latest needs sort in the same block: add `sort: semver` (or `sort: alpha`) to {}",
                        origin.label()
                    ),
                ));
            }
        }

        if let (Some(rules), None) = (rules, defaults)
            && is_exact(rules)
        {
            let mut seen = HashSet::new();
            let tags: Vec<String> = rules
                .glob
                .iter()
                .filter(|tag| seen.insert(tag.as_str()))
                .cloned()
                .collect();
            return Ok(TagFilter {
                glob: Some(Patterns::literals(&tags)),
                exact: Some(tags),
                include: Vec::new(),
                literal_includes: Vec::new(),
                include_globs: Patterns::default(),
                semver: None,
                exclude: Patterns::default(),
                defaults_exclude: Patterns::default(),
                builtin_exclude: Patterns::default(),
                sort: None,
                latest: None,
                min_tags: None,
                immutable: None,
            });
        }

        let glob = match pick_list(rules, defaults, |r| &r.glob) {
            Some((patterns, origin)) => Some(Patterns::compile("glob", patterns, origin, false)?),
            None => None,
        };

        let (include, include_origin) =
            pick_list(rules, defaults, |r| &r.include).unwrap_or((&[], Origin::Mapping));
        let (literal, globs): (Vec<&String>, Vec<&String>) =
            include.iter().partition(|p| is_literal(p));
        let mut seen = HashSet::new();
        let literal_includes = literal
            .into_iter()
            .filter(|tag| seen.insert(tag.as_str()))
            .cloned()
            .collect();
        let globs: Vec<String> = globs.into_iter().cloned().collect();
        let include_globs = Patterns::compile("include", &globs, include_origin, false)?;

        let semver = match pick(rules, defaults, |r| r.semver.as_ref()) {
            Some((range, origin)) => {
                let parsed = VersionRange::parse(range)
                    .map_err(|reason| invalid("semver", range.clone(), origin.annotate(&reason)))?;
                Some((range.trim().to_owned(), parsed))
            }
            None => None,
        };

        let exclude = match rules {
            Some(r) => Patterns::compile("exclude", &r.exclude, Origin::Mapping, false)?,
            None => Patterns::default(),
        };
        let defaults_exclude = match defaults {
            Some(d) => Patterns::compile("exclude", &d.exclude, Origin::Defaults, false)?,
            None => Patterns::default(),
        };
        let builtin: Vec<String> = BUILTIN_EXCLUDES.iter().map(|p| (*p).to_owned()).collect();
        let builtin_exclude = Patterns::compile("exclude", &builtin, Origin::Builtin, true)?;

        let immutable = match pick(rules, defaults, |r| r.immutable_tags.as_ref()) {
            Some((pattern, origin)) => Some(Patterns::compile(
                "immutable_tags",
                std::slice::from_ref(pattern),
                origin,
                false,
            )?),
            None => None,
        };

        Ok(TagFilter {
            exact: None,
            glob,
            include: include.to_vec(),
            literal_includes,
            include_globs,
            semver,
            exclude,
            defaults_exclude,
            builtin_exclude,
            sort: pick(rules, defaults, |r| r.sort).map(|(v, _)| v),
            latest: pick(rules, defaults, |r| r.latest).map(|(v, _)| v),
            min_tags: pick(rules, defaults, |r| r.min_tags).map(|(v, _)| v),
            immutable,
        })
    }

    /// The exact-tag fast path: `Some(tags)` when the MAPPING's own rules have only an
    /// all-literal `glob` (no `*?[{` or `\`), no other field, and there are no defaults rules —
    /// the engine then skips listing tags.
    ///
    /// On this path the built-in soft excludes do not apply (as in the original), also when
    /// [`TagFilter::select`] is called anyway.
    pub fn exact_tags(&self) -> Option<&[String]> {
        self.exact.as_deref()
    }

    /// Select from a tag list (registry order), returning kept tags (literal includes first,
    /// then the pipeline's, deduplicated) and each dropped tag with its reason.
    ///
    /// A tag listed twice is considered once. Referrers-tag-schema indexes are dropped before
    /// anything else, literal includes included.
    pub fn select(&self, tags: &[String]) -> Selection {
        let mut selection = Selection::default();
        let mut seen = HashSet::with_capacity(tags.len());
        let mut reject = |tag: &str, reason: DropReason| {
            selection.dropped.push((tag.to_owned(), reason));
        };

        let mut candidates: Vec<&str> = Vec::with_capacity(tags.len());
        for tag in tags {
            if !seen.insert(tag.as_str()) {
                continue;
            }
            if is_referrers_index(tag) {
                reject(tag, DropReason::ReferrersIndex);
            } else {
                candidates.push(tag);
            }
        }

        // Literal includes: set aside, so `latest` does not count them; only the hard tier
        // applies.
        let mut kept: Vec<&str> = Vec::new();
        if !self.literal_includes.is_empty() {
            let literal: HashSet<&str> = self.literal_includes.iter().map(String::as_str).collect();
            let present: HashSet<&str> = candidates
                .iter()
                .copied()
                .filter(|tag| literal.contains(tag))
                .collect();
            for tag in &self.literal_includes {
                if !present.contains(tag.as_str()) {
                    continue;
                }
                match self.exclude.first_match(tag) {
                    Some(pattern) => reject(tag, DropReason::Exclude(pattern.to_owned())),
                    None => kept.push(tag),
                }
            }
            candidates.retain(|tag| !literal.contains(tag));
        }

        // Glob stage; a glob include admits too, and exempts the tag from the soft tiers.
        let mut pipeline: Vec<(&str, bool)> = Vec::with_capacity(candidates.len());
        for tag in candidates {
            let rescued = self.include_globs.is_match(tag);
            let admitted = match &self.glob {
                Some(glob) => rescued || glob.is_match(tag),
                None => true,
            };
            if admitted {
                pipeline.push((tag, rescued));
            } else {
                reject(tag, DropReason::Glob);
            }
        }

        if let Some((_, range)) = &self.semver {
            pipeline.retain(|&(tag, _)| {
                let keep = range.matches_tag(tag);
                if !keep {
                    reject(tag, DropReason::Semver);
                }
                keep
            });
        }

        pipeline.retain(|&(tag, rescued)| {
            let reason = if let Some(pattern) = self.exclude.first_match(tag) {
                DropReason::Exclude(pattern.to_owned())
            } else if rescued {
                return true;
            } else if let Some(pattern) = self.defaults_exclude.first_match(tag) {
                DropReason::DefaultExclude(pattern.to_owned())
            } else if let Some(pattern) = self.builtin_exclude.first_match(tag) {
                DropReason::BuiltinExclude(pattern.to_owned())
            } else {
                return true;
            };
            reject(tag, reason);
            false
        });

        let mut pipeline: Vec<&str> = pipeline.into_iter().map(|(tag, _)| tag).collect();
        match self.sort {
            Some(TagSort::Semver) => sort_semver(&mut pipeline),
            Some(TagSort::Alpha) => pipeline.sort_unstable_by(|a, b| b.cmp(a)),
            None => {}
        }
        if let Some(latest) = self.latest
            && pipeline.len() > latest
        {
            for tag in pipeline.split_off(latest) {
                reject(tag, DropReason::Latest);
            }
        }

        kept.extend(pipeline);
        selection.kept = kept.into_iter().map(str::to_owned).collect();
        selection
    }

    /// Check `min_tags` for a selection of `repository` (BelowMinTags error).
    pub fn check_min_tags(&self, repository: &str, selection: &Selection) -> Result<(), Error> {
        match self.min_tags {
            Some(min_tags) if selection.kept.len() < min_tags => Err(ErrorKind::BelowMinTags {
                repository: repository.to_owned(),
                selected: selection.kept.len(),
                min_tags,
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// Whether a tag matches `immutable_tags`.
    pub fn is_immutable(&self, tag: &str) -> bool {
        self.immutable
            .as_ref()
            .is_some_and(|immutable| immutable.is_match(tag))
    }

    /// The configured `min_tags`, if any.
    pub fn min_tags(&self) -> Option<usize> {
        self.min_tags
    }

    /// A one-line human description (`glob [v*], semver >=1.2, exclude [*-rc*], sort semver,
    /// latest 3`); `all tags` when nothing but the built-in excludes applies.
    pub fn describe(&self) -> String {
        if let Some(tags) = &self.exact {
            return format!("exact tags [{}]", tags.join(", "));
        }
        let mut parts = Vec::new();
        if let Some(glob) = &self.glob {
            parts.push(format!("glob [{}]", glob.configured.join(", ")));
        }
        if !self.include.is_empty() {
            parts.push(format!("include [{}]", self.include.join(", ")));
        }
        if let Some((range, _)) = &self.semver {
            parts.push(format!("semver {range}"));
        }
        if !self.exclude.configured.is_empty() {
            parts.push(format!("exclude [{}]", self.exclude.configured.join(", ")));
        }
        if !self.defaults_exclude.configured.is_empty() {
            parts.push(format!(
                "defaults exclude [{}]",
                self.defaults_exclude.configured.join(", ")
            ));
        }
        if let Some(sort) = self.sort {
            parts.push(format!("sort {}", sort.as_str()));
        }
        if let Some(latest) = self.latest {
            parts.push(format!("latest {latest}"));
        }
        if let Some(min_tags) = self.min_tags {
            parts.push(format!("min_tags {min_tags}"));
        }
        if let Some(immutable) = &self.immutable {
            parts.push(format!(
                "immutable_tags {}",
                immutable.configured.join(", ")
            ));
        }
        if parts.is_empty() {
            "all tags".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// The digest a cosign tag refers to: `sha256-<hex>.sig` (also `.att`, `.sbom`) gives
/// `sha256:<hex>`, so the engine can copy such tags after their subject.
pub fn cosign_subject(tag: &str) -> Option<Digest> {
    let (stem, kind) = tag.rsplit_once('.')?;
    if !matches!(kind, "sig" | "att" | "sbom") {
        return None;
    }
    let (algorithm, encoded) = stem.split_once('-')?;
    if !matches!(algorithm, "sha256" | "sha512") {
        return None;
    }
    format!("{algorithm}:{encoded}").parse().ok()
}

/// Whether `tag` is a referrers-tag-schema index: `<alg>-<ref>`, the reference truncated to 64
/// characters (distribution-spec "Referrers Tag Schema"), so `sha512-<64 hex>`; a full
/// `sha512-<128 hex>` is accepted too.
fn is_referrers_index(tag: &str) -> bool {
    let Some((algorithm, encoded)) = tag.split_once('-') else {
        return false;
    };
    let length_ok = match algorithm {
        "sha256" => encoded.len() == 64,
        "sha512" => encoded.len() == 64 || encoded.len() == 128,
        _ => false,
    };
    length_ok
        && encoded
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a pattern is a plain tag (matching only itself), not a glob.
fn is_literal(pattern: &str) -> bool {
    !pattern.contains(['*', '?', '[', '{', '\\'])
}

/// The exact-tag fast path condition on the mapping's own block.
fn is_exact(rules: &TagRules) -> bool {
    let TagRules {
        glob,
        include,
        semver,
        exclude,
        sort,
        latest,
        min_tags,
        immutable_tags,
    } = rules;
    !glob.is_empty()
        && glob.iter().all(|p| is_literal(p))
        && include.is_empty()
        && semver.is_none()
        && exclude.is_empty()
        && sort.is_none()
        && latest.is_none()
        && min_tags.is_none()
        && immutable_tags.is_none()
}

fn invalid(field: &'static str, input: String, reason: String) -> Error {
    ErrorKind::InvalidFilter {
        field,
        input,
        reason,
    }
    .into()
}

/// Which block a merged field came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Mapping,
    Defaults,
    Builtin,
}

impl Origin {
    fn label(self) -> &'static str {
        match self {
            Origin::Mapping => "the mapping's tags block",
            Origin::Defaults => "defaults.tags",
            Origin::Builtin => "the built-in excludes",
        }
    }

    /// `reason`, saying where the value came from unless it is the mapping's own.
    fn annotate(self, reason: &str) -> String {
        match self {
            Origin::Mapping => reason.to_owned(),
            Origin::Defaults | Origin::Builtin => format!("{reason} (in {})", self.label()),
        }
    }
}

/// The mapping's value of a field if set, else the defaults'.
fn pick<'a, T>(
    rules: Option<&'a TagRules>,
    defaults: Option<&'a TagRules>,
    field: impl Fn(&'a TagRules) -> Option<T>,
) -> Option<(T, Origin)> {
    rules
        .and_then(|r| field(r).map(|v| (v, Origin::Mapping)))
        .or_else(|| defaults.and_then(|d| field(d).map(|v| (v, Origin::Defaults))))
}

/// [`pick`] for list fields, where empty means unset.
fn pick_list<'a>(
    rules: Option<&'a TagRules>,
    defaults: Option<&'a TagRules>,
    field: impl Fn(&'a TagRules) -> &'a Vec<String>,
) -> Option<(&'a [String], Origin)> {
    pick(rules, defaults, |r| {
        let list = field(r);
        (!list.is_empty()).then_some(list.as_slice())
    })
}

/// The compiled patterns of one field: literals compare by equality, globs go through one
/// [`GlobSet`].
#[derive(Debug, Clone, Default)]
struct Patterns {
    /// As configured, in order.
    configured: Vec<String>,
    literals: HashSet<String>,
    /// The glob patterns, indexed like `set`.
    globs: Vec<String>,
    set: GlobSet,
}

impl Patterns {
    fn literals(tags: &[String]) -> Patterns {
        Patterns {
            configured: tags.to_vec(),
            literals: tags.iter().cloned().collect(),
            globs: Vec::new(),
            set: GlobSet::empty(),
        }
    }

    fn compile(
        field: &'static str,
        patterns: &[String],
        origin: Origin,
        case_insensitive: bool,
    ) -> Result<Patterns, Error> {
        let mut literals = HashSet::new();
        let mut globs = Vec::new();
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            if !case_insensitive && is_literal(pattern) {
                literals.insert(pattern.clone());
                continue;
            }
            let glob = GlobBuilder::new(pattern)
                .case_insensitive(case_insensitive)
                .backslash_escape(true)
                .build()
                .map_err(|e| {
                    invalid(
                        field,
                        pattern.clone(),
                        origin.annotate(&e.kind().to_string()),
                    )
                })?;
            builder.add(glob);
            globs.push(pattern.clone());
        }
        let set = builder.build().map_err(|e| {
            invalid(
                field,
                globs.join(", "),
                origin.annotate(&e.kind().to_string()),
            )
        })?;
        Ok(Patterns {
            configured: patterns.to_vec(),
            literals,
            globs,
            set,
        })
    }

    fn is_match(&self, tag: &str) -> bool {
        self.literals.contains(tag) || self.set.is_match(tag)
    }

    /// The first matching pattern, a literal before a glob.
    fn first_match(&self, tag: &str) -> Option<&str> {
        if let Some(literal) = self.literals.get(tag) {
            return Some(literal);
        }
        if self.globs.is_empty() {
            return None;
        }
        let first = self.set.matches(tag).into_iter().min()?;
        Some(&self.globs[first])
    }
}

/// A tag read as a version, leniently: optional `v`, a numeric prefix of `.`/`_`-separated
/// parts, then after the first `-` an opaque suffix cut into tokens at `.`, `-`, `_` and at
/// letter/digit boundaries (`1.0.0-rc1` and `1.0.0-rc.1` have the same tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TagVersion<'a> {
    prefix: Vec<u64>,
    suffix: Vec<Token<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Numeric(u64),
    Alpha(&'a str),
}

impl<'a> TagVersion<'a> {
    fn parse(tag: &'a str) -> Option<TagVersion<'a>> {
        let rest = tag.strip_prefix('v').unwrap_or(tag);
        let (prefix, suffix) = match rest.split_once('-') {
            Some((prefix, suffix)) => (prefix, suffix),
            None => (rest, ""),
        };
        let prefix = parse_numbers(prefix, &['.', '_'])?;
        Some(TagVersion {
            prefix,
            suffix: tokenize(suffix),
        })
    }

    /// Ascending order: numeric prefix zero-padded, then no suffix above any suffix, then
    /// suffix tokens pairwise (numeric below alpha), then the longer suffix above.
    fn compare(&self, other: &TagVersion<'_>) -> Ordering {
        compare_padded(&self.prefix, &other.prefix).then_with(|| {
            match (self.suffix.is_empty(), other.suffix.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self
                    .suffix
                    .iter()
                    .zip(&other.suffix)
                    .map(|(a, b)| match (a, b) {
                        (Token::Numeric(a), Token::Numeric(b)) => a.cmp(b),
                        (Token::Alpha(a), Token::Alpha(b)) => a.cmp(b),
                        (Token::Numeric(_), Token::Alpha(_)) => Ordering::Less,
                        (Token::Alpha(_), Token::Numeric(_)) => Ordering::Greater,
                    })
                    .find(|ordering| ordering.is_ne())
                    .unwrap_or_else(|| self.suffix.len().cmp(&other.suffix.len())),
            }
        })
    }
}

/// Non-empty, all-digit, `u64` parts separated by any of `separators`.
fn parse_numbers(s: &str, separators: &[char]) -> Option<Vec<u64>> {
    s.split(separators)
        .map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                part.parse().ok()
            }
        })
        .collect()
}

fn tokenize(suffix: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    for part in suffix.split(['.', '-', '_']) {
        let mut rest = part;
        while let Some(first) = rest.chars().next() {
            let digits = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digits)
                .unwrap_or(rest.len());
            let (token, tail) = rest.split_at(end);
            tokens.push(match token.parse() {
                Ok(n) if digits => Token::Numeric(n),
                _ => Token::Alpha(token),
            });
            rest = tail;
        }
    }
    tokens
}

fn compare_padded(a: &[u64], b: &[u64]) -> Ordering {
    (0..a.len().max(b.len()))
        .map(|i| {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            x.cmp(&y)
        })
        .find(|ordering| ordering.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Newest first; tags that are not versions last, descending by bytes; ties by bytes too.
fn sort_semver(tags: &mut [&str]) {
    let mut decorated: Vec<(Option<TagVersion<'_>>, &str)> = tags
        .iter()
        .map(|tag| (TagVersion::parse(tag), *tag))
        .collect();
    decorated.sort_by(|(va, ta), (vb, tb)| {
        match (va, vb) {
            (Some(a), Some(b)) => b.compare(a),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
        .then_with(|| tb.cmp(ta))
    });
    for (slot, (_, tag)) in tags.iter_mut().zip(decorated) {
        *slot = tag;
    }
}

/// A version range: `||`-separated groups of comma-joined constraints; a tag's numeric prefix
/// must satisfy every constraint of one group. Suffixes are ignored, as in the original.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VersionRange {
    any_of: Vec<Vec<Constraint>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Constraint {
    op: Op,
    bound: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ge,
    Le,
    Gt,
    Lt,
    Eq,
}

impl VersionRange {
    /// Parse a range; the error is the reason, with an example.
    fn parse(input: &str) -> Result<VersionRange, String> {
        if input.trim().is_empty() {
            return Err(format!("the range is empty; {RANGE_EXAMPLE}"));
        }
        let any_of = input
            .split("||")
            .map(|group| {
                let mut constraints = Vec::new();
                for part in group.split(',') {
                    parse_constraint(part.trim(), &mut constraints)
                        .map_err(|reason| format!("{reason}; {RANGE_EXAMPLE}"))?;
                }
                Ok(constraints)
            })
            .collect::<Result<_, String>>()?;
        Ok(VersionRange { any_of })
    }

    fn matches_tag(&self, tag: &str) -> bool {
        // Referrers fallback and cosign tags are never versions (the original says so
        // explicitly, so they stay out of its unparseable-tag log).
        if tag.starts_with("sha256-") || tag.starts_with("sha512-") {
            return false;
        }
        TagVersion::parse(tag).is_some_and(|version| self.matches(&version.prefix))
    }

    fn matches(&self, prefix: &[u64]) -> bool {
        self.any_of
            .iter()
            .any(|group| group.iter().all(|c| c.matches(prefix)))
    }
}

impl Constraint {
    fn matches(&self, prefix: &[u64]) -> bool {
        let ordering = compare_padded(prefix, &self.bound);
        match self.op {
            Op::Ge => ordering.is_ge(),
            Op::Le => ordering.is_le(),
            Op::Gt => ordering.is_gt(),
            Op::Lt => ordering.is_lt(),
            Op::Eq => ordering.is_eq(),
        }
    }
}

/// A constraint's operator; `^` and `~` expand to a `>=` and a `<` bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Compare(Op),
    Caret,
    Tilde,
}

/// Longest first, so `>=` is not read as `>`.
const OPERATORS: [(&str, Operator); 7] = [
    (">=", Operator::Compare(Op::Ge)),
    ("<=", Operator::Compare(Op::Le)),
    (">", Operator::Compare(Op::Gt)),
    ("<", Operator::Compare(Op::Lt)),
    ("=", Operator::Compare(Op::Eq)),
    ("^", Operator::Caret),
    ("~", Operator::Tilde),
];

/// Parse one constraint into `out`. `^` and `~` have Cargo's meaning: `^1.2` is `>=1.2, <2`,
/// `^0.2` is `>=0.2, <0.3`, `^0.0.3` is `>=0.0.3, <0.0.4`, `~1.2` is `>=1.2, <1.3`, `~1` is
/// `>=1, <2`.
fn parse_constraint(constraint: &str, out: &mut Vec<Constraint>) -> Result<(), String> {
    if constraint.is_empty() {
        return Err("a constraint is empty (a stray ',' or '||'?)".to_owned());
    }
    let (operator, rest) = OPERATORS
        .iter()
        .find_map(|(token, operator)| constraint.strip_prefix(token).map(|rest| (*operator, rest)))
        .unwrap_or((Operator::Compare(Op::Eq), constraint));
    let rest = rest.trim_start();
    let version = rest.strip_prefix('v').unwrap_or(rest);

    if version.is_empty() {
        return Err(format!("'{constraint}' has no version"));
    }
    if version.contains(char::is_whitespace) {
        return Err(format!(
            "'{constraint}' holds more than one constraint: join them with ',' (and) or '||' (or)"
        ));
    }
    if version.contains(['*', 'x', 'X']) {
        return Err(format!("wildcards ('{constraint}') are not supported"));
    }
    if version.contains('-') {
        return Err(format!(
            "'{constraint}': a bound cannot carry a suffix (suffixes are ignored when matching)"
        ));
    }
    let Some(bound) = parse_numbers(version, &['.']) else {
        return Err(format!("'{constraint}' is not a version bound"));
    };

    // The component that the upper bound increments (the bound has at least one).
    let index = match operator {
        Operator::Compare(op) => {
            out.push(Constraint { op, bound });
            return Ok(());
        }
        Operator::Caret => bound
            .iter()
            .position(|&n| n != 0)
            .unwrap_or(bound.len() - 1),
        Operator::Tilde => usize::from(bound.len() >= 2),
    };
    let mut upper = bound[..=index].to_vec();
    let next = upper[index].checked_add(1);
    out.push(Constraint { op: Op::Ge, bound });
    // Past u64::MAX there is no upper bound.
    if let Some(next) = next {
        upper[index] = next;
        out.push(Constraint {
            op: Op::Lt,
            bound: upper,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H64: &str = "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn rules(edit: impl FnOnce(&mut TagRules)) -> TagRules {
        let mut rules = TagRules::default();
        edit(&mut rules);
        rules
    }

    fn filter(rules: Option<&TagRules>, defaults: Option<&TagRules>) -> TagFilter {
        TagFilter::new(rules, defaults).expect("valid filter")
    }

    /// The `InvalidFilter` parts of an error, and its message.
    fn invalid_parts(error: &Error) -> (&'static str, String, String) {
        match error.kind() {
            ErrorKind::InvalidFilter { field, input, .. } => {
                (*field, input.clone(), error.to_string())
            }
            other => panic!("expected InvalidFilter, got {other:?}"),
        }
    }

    fn builtin(pattern: &str) -> DropReason {
        DropReason::BuiltinExclude(pattern.to_owned())
    }

    fn exclude(pattern: &str) -> DropReason {
        DropReason::Exclude(pattern.to_owned())
    }

    type Parsed<'a> = Option<(Vec<u64>, Vec<Token<'a>>)>;

    #[test]
    fn parses_tags_as_versions() {
        use Token::{Alpha, Numeric};
        let too_big = "1".repeat(25);
        let cases: [(&str, Parsed<'_>); 20] = [
            ("1.21.5", Some((vec![1, 21, 5], vec![]))),
            ("15.10", Some((vec![15, 10], vec![]))),
            ("21", Some((vec![21], vec![]))),
            ("v1.27.6", Some((vec![1, 27, 6], vec![]))),
            ("v0", Some((vec![0], vec![]))),
            ("21.0.5_11", Some((vec![21, 0, 5, 11], vec![]))),
            ("1.0-", Some((vec![1, 0], vec![]))),
            ("1.0---", Some((vec![1, 0], vec![]))),
            ("15.10-alpine", Some((vec![15, 10], vec![Alpha("alpine")]))),
            (
                "1.25.5-r0",
                Some((vec![1, 25, 5], vec![Alpha("r"), Numeric(0)])),
            ),
            (
                "25.0.3_9-jre-alpine-3.23",
                Some((
                    vec![25, 0, 3, 9],
                    vec![Alpha("jre"), Alpha("alpine"), Numeric(3), Numeric(23)],
                )),
            ),
            (
                "20.18.1-alpine3.20",
                Some((
                    vec![20, 18, 1],
                    vec![Alpha("alpine"), Numeric(3), Numeric(20)],
                )),
            ),
            (
                "1.0.0-rc.1",
                Some((vec![1, 0, 0], vec![Alpha("rc"), Numeric(1)])),
            ),
            ("", None),
            ("v", None),
            ("latest", None),
            ("lts-iron", None),
            ("17rc1", None),
            ("1..2", None),
            (&too_big, None),
        ];
        for (tag, expected) in cases {
            let parsed = TagVersion::parse(tag).map(|v| (v.prefix, v.suffix));
            assert_eq!(parsed, expected, "{tag}");
        }
        // Same tokens however the suffix is punctuated.
        assert_eq!(
            TagVersion::parse("1.0.0-rc1").map(|v| v.suffix),
            TagVersion::parse("1.0.0-rc.1").map(|v| v.suffix)
        );
    }

    #[test]
    fn compares_versions_like_the_reference() {
        use Ordering::{Equal, Greater, Less};
        let cases = [
            ("2.0.0", "1.0.0", Greater),
            ("1.0", "1.0.0", Equal),
            ("1.0.5", "1.0", Greater),
            ("1.0.0", "1.0.0-rc1", Greater),
            ("1.0.0-alpha", "1.0.0", Less),
            ("25.0.3_10", "25.0.3_9", Greater),
            ("25.0.3", "25.0.2_999", Greater),
            ("1.0.0-rc10", "1.0.0-rc9", Greater),
            ("1.0.0-rc1", "1.0.0-rc.1", Equal),
            ("1.0.0-rc.1", "1.0.0-rc.2", Less),
            ("1.0.0-1", "1.0.0-alpha", Less),
            ("1.0.0-RC1", "1.0.0-rc1", Less),
            ("1.0.0-rc.1", "1.0.0-rc.1.hotfix", Less),
            ("v1.27.6-eks-1-27-14", "v1.27.6-eks-1-27-9", Greater),
            ("1.31.3-debian-12-r3", "1.31.3-debian-12-r2", Greater),
        ];
        for (a, b, expected) in cases {
            let (va, vb) = (TagVersion::parse(a).unwrap(), TagVersion::parse(b).unwrap());
            assert_eq!(va.compare(&vb), expected, "{a} vs {b}");
            assert_eq!(vb.compare(&va), expected.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn sorts_semver_descending_with_tie_rules() {
        let cases: [(&[&str], &[&str]); 7] = [
            (
                &["1.0.0", "1.2.0", "1.1.0", "2.0.0"],
                &["2.0.0", "1.2.0", "1.1.0", "1.0.0"],
            ),
            // Not versions: last, descending by bytes.
            (
                &["latest", "1.0.0", "nightly", "2.0.0"],
                &["2.0.0", "1.0.0", "nightly", "latest"],
            ),
            // No suffix above any suffix; suffixes pairwise.
            (
                &["1.0.0", "1.0.0-rc1", "1.0.0-alpha", "1.1.0-beta1", "1.1.0"],
                &["1.1.0", "1.1.0-beta1", "1.0.0", "1.0.0-rc1", "1.0.0-alpha"],
            ),
            // Numeric token below alpha token.
            (&["1.0-alpine", "1.0-1"], &["1.0-alpine", "1.0-1"]),
            // Equal versions: descending bytes, whatever the listing order.
            (&["1.0", "1.0.0", "v1.0"], &["v1.0", "1.0.0", "1.0"]),
            (&["v1.0", "1.0.0", "1.0"], &["v1.0", "1.0.0", "1.0"]),
            (&["1.0.0-rc.1", "1.0.0-rc1"], &["1.0.0-rc1", "1.0.0-rc.1"]),
        ];
        for (input, expected) in cases {
            let mut tags = input.to_vec();
            sort_semver(&mut tags);
            assert_eq!(tags, expected, "{input:?}");
        }
    }

    #[test]
    fn matches_version_ranges() {
        let sig = format!("sha256-{H64}.sig");
        let cases = [
            // The reference's examples: only the numeric prefix counts, zero-padded.
            (">=1.25", "1.25.5-r3", true),
            (">=15", "15.10-alpine", true),
            (">=1.0", "1.0.0", true),
            (">=1.0", "0.9.0", false),
            ("<2.0", "1.99.99", true),
            ("<2.0", "2.0.0-rc1", false),
            (">=1.0, <2.0", "1.5.0", true),
            (">=1.0, <2.0", "2.0.0", false),
            (" >= 1.0 , < 2.0 ", "1.5.0", true),
            ("1.0", "1.0.0", true),
            ("1.0", "1", true),
            ("1.0", "1.0.5", false),
            ("=15.0", "15", true),
            ("=15.0", "15.0.5", false),
            (">=v2", "v2.1", true),
            (">1.2", "1.2.0", false),
            (">1.2", "1.2.1", true),
            ("<=1.2", "1.2.0-r9", true),
            (">=15.0", "15.10.5", true),
            // Caret and tilde, Cargo's meaning.
            ("^1.2", "1.2.0", true),
            ("^1.2", "1.9.9-r1", true),
            ("^1.2", "2.0.0", false),
            ("^1.2", "1.1", false),
            ("^0.2.3", "0.2.5", true),
            ("^0.2.3", "0.3.0", false),
            ("^0.0.3", "0.0.3", true),
            ("^0.0.3", "0.0.4", false),
            ("^0", "0.9", true),
            ("^0", "1.0", false),
            ("^v1", "v1.5", true),
            ("~1.2", "1.2.9", true),
            ("~1.2", "1.3", false),
            ("~1.2.3", "1.2.2", false),
            ("~1", "1.9", true),
            ("~1", "2.0", false),
            // OR of AND groups.
            (">=1.0, <1.2 || >=2.0", "1.1", true),
            (">=1.0, <1.2 || >=2.0", "1.5", false),
            (">=1.0, <1.2 || >=2.0", "3.0", true),
            ("^1 || ^3", "2.5", false),
            ("^1 || ^3", "3.1", true),
            // Never versions.
            (">=0", "latest", false),
            (">=0", "sha256-1", false),
            (">=0", "sha512-2.0", false),
            (">=0", sig.as_str(), false),
        ];
        for (range, tag, expected) in cases {
            let parsed = VersionRange::parse(range).expect(range);
            assert_eq!(parsed.matches_tag(tag), expected, "{tag} in {range}");
        }
        // A bound past u64::MAX has no upper limit.
        let max = format!("^{}", u64::MAX);
        assert!(VersionRange::parse(&max).unwrap().matches_tag(&max[1..]));
    }

    #[test]
    fn rejects_invalid_ranges_naming_the_input() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            (">=1,", "a constraint is empty"),
            (">=1 ||", "a constraint is empty"),
            (">=1.2 <2", "join them with ','"),
            ("1.x", "wildcards"),
            ("*", "wildcards"),
            (">=1.0-rc1", "cannot carry a suffix"),
            ("1.0.0-r0", "cannot carry a suffix"),
            (">= not_a_version", "not a version bound"),
            ("=>1", "not a version bound"),
            ("1..2", "not a version bound"),
            ("99999999999999999999999", "not a version bound"),
            (">=", "has no version"),
        ];
        for (range, reason) in cases {
            let r = rules(|r| r.semver = Some(range.to_owned()));
            let error = TagFilter::new(Some(&r), None).expect_err(range);
            let (field, input, message) = invalid_parts(&error);
            assert_eq!((field, input.as_str()), ("semver", range));
            assert!(message.contains(&format!("'{range}'")), "{message}");
            assert!(message.contains(reason), "{message}");
            assert!(message.contains("e.g. '>=1.25, <2'"), "{message}");
        }
    }

    struct Case {
        name: &'static str,
        rules: Option<TagRules>,
        defaults: Option<TagRules>,
        tags: &'static [&'static str],
        kept: &'static [&'static str],
        dropped: Vec<(&'static str, DropReason)>,
    }

    #[test]
    fn selects_through_the_pipeline() {
        let cases = [
            Case {
                name: "no tags block: every tag but built-in pre-releases",
                rules: None,
                defaults: None,
                tags: &[
                    "1.0",
                    "latest",
                    "2.0-rc1",
                    "2.0-RC2",
                    "3.0-preview",
                    "nightly",
                ],
                kept: &["1.0", "latest", "nightly"],
                dropped: vec![
                    ("2.0-rc1", builtin("*-rc*")),
                    ("2.0-RC2", builtin("*-rc*")),
                    ("3.0-preview", builtin("*-pre*")),
                ],
            },
            Case {
                name: "glob is an OR, case-sensitive",
                rules: Some(rules(|r| r.glob = strings(&["v1.*", "v2.*"]))),
                defaults: None,
                tags: &["v1.0", "V1.1", "v2.0", "v3.0", "latest"],
                kept: &["v1.0", "v2.0"],
                dropped: vec![
                    ("V1.1", DropReason::Glob),
                    ("v3.0", DropReason::Glob),
                    ("latest", DropReason::Glob),
                ],
            },
            Case {
                name: "semver drops tags that are not versions",
                rules: Some(rules(|r| r.semver = Some(">=1.0".into()))),
                defaults: None,
                tags: &["latest", "0.9", "1.0", "2.0"],
                kept: &["1.0", "2.0"],
                dropped: vec![("latest", DropReason::Semver), ("0.9", DropReason::Semver)],
            },
            Case {
                name: "the original's full pipeline",
                rules: Some(rules(|r| {
                    r.glob = strings(&["1.*"]);
                    r.semver = Some(">=1.18.0".into());
                    r.exclude = strings(&["*-rc*"]);
                    r.sort = Some(TagSort::Semver);
                    r.latest = Some(2);
                })),
                defaults: None,
                tags: &[
                    "1.18.0",
                    "1.19.0",
                    "1.20.0",
                    "1.20.1-rc1",
                    "1.17.0",
                    "latest",
                    "nightly",
                ],
                kept: &["1.20.0", "1.19.0"],
                dropped: vec![
                    ("latest", DropReason::Glob),
                    ("nightly", DropReason::Glob),
                    ("1.17.0", DropReason::Semver),
                    ("1.20.1-rc1", exclude("*-rc*")),
                    ("1.18.0", DropReason::Latest),
                ],
            },
            Case {
                name: "literal includes come first and skip glob, semver and soft tiers",
                rules: Some(rules(|r| {
                    r.glob = strings(&["1.*"]);
                    r.semver = Some(">=1.1".into());
                    r.include = strings(&["2.0-rc1", "latest"]);
                })),
                defaults: None,
                tags: &["1.0", "1.1", "latest", "2.0-rc1"],
                kept: &["2.0-rc1", "latest", "1.1"],
                dropped: vec![("1.0", DropReason::Semver)],
            },
            Case {
                name: "the hard exclude beats a literal include",
                rules: Some(rules(|r| {
                    r.include = strings(&["edge", "stable"]);
                    r.exclude = strings(&["edge"]);
                })),
                defaults: None,
                tags: &["1.0", "edge", "stable"],
                kept: &["stable", "1.0"],
                dropped: vec![("edge", exclude("edge"))],
            },
            Case {
                name: "a glob include rescues from glob and soft tiers, not semver or hard exclude",
                rules: Some(rules(|r| {
                    r.glob = strings(&["1.*"]);
                    r.include = strings(&["*-rc*"]);
                    r.semver = Some(">=1.5".into());
                    r.exclude = strings(&["*-rc9"]);
                })),
                defaults: None,
                tags: &[
                    "1.4", "1.5", "1.6-rc1", "2.0-rc1", "2.0-rc9", "1.0-rc1", "2.0", "1.7-beta",
                ],
                kept: &["1.5", "1.6-rc1", "2.0-rc1"],
                dropped: vec![
                    ("2.0", DropReason::Glob),
                    ("1.4", DropReason::Semver),
                    ("1.0-rc1", DropReason::Semver),
                    ("2.0-rc9", exclude("*-rc9")),
                    ("1.7-beta", builtin("*-beta*")),
                ],
            },
            Case {
                name: "the defaults' exclude is soft, the mapping's hard",
                rules: Some(rules(|r| {
                    r.include = strings(&["*-dev"]);
                    r.exclude = strings(&["*-debug"]);
                })),
                defaults: Some(rules(|r| r.exclude = strings(&["*-dev", "*-slim"]))),
                tags: &["1.0", "1.0-dev", "1.0-slim", "1.0-debug"],
                kept: &["1.0", "1.0-dev"],
                dropped: vec![
                    ("1.0-slim", DropReason::DefaultExclude("*-slim".into())),
                    ("1.0-debug", exclude("*-debug")),
                ],
            },
            Case {
                name: "fields merge one by one, the mapping's winning",
                rules: Some(rules(|r| r.semver = Some(">=2".into()))),
                defaults: Some(rules(|r| {
                    r.glob = strings(&["v*"]);
                    r.semver = Some(">=1".into());
                    r.sort = Some(TagSort::Semver);
                    r.latest = Some(2);
                })),
                tags: &["v1.0", "v2.0", "v2.1", "v3.0", "3.5"],
                kept: &["v3.0", "v2.1"],
                dropped: vec![
                    ("3.5", DropReason::Glob),
                    ("v1.0", DropReason::Semver),
                    ("v2.0", DropReason::Latest),
                ],
            },
            Case {
                name: "defaults alone",
                rules: None,
                defaults: Some(rules(|r| r.exclude = strings(&["*-slim"]))),
                tags: &["1.0", "1.0-slim"],
                kept: &["1.0"],
                dropped: vec![("1.0-slim", DropReason::DefaultExclude("*-slim".into()))],
            },
            Case {
                name: "sort alpha, latest",
                rules: Some(rules(|r| {
                    r.sort = Some(TagSort::Alpha);
                    r.latest = Some(2);
                })),
                defaults: None,
                tags: &["b", "a", "c"],
                kept: &["c", "b"],
                dropped: vec![("a", DropReason::Latest)],
            },
            Case {
                name: "literal includes do not count against latest",
                rules: Some(rules(|r| {
                    r.include = strings(&["latest", "1.0"]);
                    r.sort = Some(TagSort::Semver);
                    r.latest = Some(1);
                })),
                defaults: None,
                tags: &["1.0", "latest", "2.0", "3.0"],
                kept: &["latest", "1.0", "3.0"],
                dropped: vec![("2.0", DropReason::Latest)],
            },
            Case {
                name: "glob includes do count against latest",
                rules: Some(rules(|r| {
                    r.include = strings(&["*-lts"]);
                    r.sort = Some(TagSort::Semver);
                    r.latest = Some(2);
                })),
                defaults: None,
                tags: &["1.0", "2.0-lts", "3.0"],
                kept: &["3.0", "2.0-lts"],
                dropped: vec![("1.0", DropReason::Latest)],
            },
            Case {
                name: "latest 0 keeps only literal includes",
                rules: Some(rules(|r| {
                    r.include = strings(&["stable"]);
                    r.sort = Some(TagSort::Alpha);
                    r.latest = Some(0);
                })),
                defaults: None,
                tags: &["1.0", "stable"],
                kept: &["stable"],
                dropped: vec![("1.0", DropReason::Latest)],
            },
            Case {
                name: "a literal include missing from the listing is ignored",
                rules: Some(rules(|r| r.include = strings(&["stable"]))),
                defaults: None,
                tags: &["1.0"],
                kept: &["1.0"],
                dropped: vec![],
            },
            Case {
                name: "a tag listed twice is considered once",
                rules: None,
                defaults: None,
                tags: &["1.0", "1.0", "2.0"],
                kept: &["1.0", "2.0"],
                dropped: vec![],
            },
            Case {
                name: "the exact-tag filter skips the built-ins",
                rules: Some(rules(|r| r.glob = strings(&["1.0-rc1", "2.0"]))),
                defaults: None,
                tags: &["1.0-rc1", "2.0", "3.0"],
                kept: &["1.0-rc1", "2.0"],
                dropped: vec![("3.0", DropReason::Glob)],
            },
            Case {
                name: "literal globs with another field keep the built-ins",
                rules: Some(rules(|r| {
                    r.glob = strings(&["1.0-rc1", "2.0"]);
                    r.sort = Some(TagSort::Alpha);
                })),
                defaults: None,
                tags: &["1.0-rc1", "2.0", "3.0"],
                kept: &["2.0"],
                dropped: vec![("3.0", DropReason::Glob), ("1.0-rc1", builtin("*-rc*"))],
            },
        ];
        for case in cases {
            let filter = filter(case.rules.as_ref(), case.defaults.as_ref());
            let selection = filter.select(&strings(case.tags));
            let dropped: Vec<(String, DropReason)> = case
                .dropped
                .into_iter()
                .map(|(tag, reason)| (tag.to_owned(), reason))
                .collect();
            assert_eq!(
                selection,
                Selection {
                    kept: strings(case.kept),
                    dropped
                },
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn drops_referrers_indexes_first_and_keeps_cosign_tags() {
        let index256 = format!("sha256-{H64}");
        let index512 = format!("sha512-{H64}");
        let index512_full = format!("sha512-{H64}{H64}");
        let sig = format!("sha256-{H64}.sig");
        let tags = vec![
            index256.clone(),
            sig.clone(),
            index512.clone(),
            index512_full.clone(),
            "sha256-abc".to_owned(),
            format!("sha256-{}", H64.to_uppercase()),
            "1.0".to_owned(),
        ];
        // Even a literal include does not keep an index.
        let r = rules(|r| r.include = vec![index256.clone()]);
        for rules in [None, Some(&r)] {
            let selection = filter(rules, None).select(&tags);
            let expected: Vec<String> = [&tags[1]].into_iter().chain(&tags[4..]).cloned().collect();
            assert_eq!(selection.kept, expected);
            assert_eq!(
                selection.dropped,
                vec![
                    (index256.clone(), DropReason::ReferrersIndex),
                    (index512.clone(), DropReason::ReferrersIndex),
                    (index512_full.clone(), DropReason::ReferrersIndex),
                ]
            );
        }
        // A range admits none of them, cosign tags included.
        let r = rules(|r| r.semver = Some(">=0".into()));
        let selection = filter(Some(&r), None).select(&tags);
        assert_eq!(selection.kept, vec!["1.0".to_owned()]);
        assert!(selection.dropped.contains(&(sig, DropReason::Semver)));
    }

    /// Name, mapping rules, defaults rules, expected exact tags.
    type ExactCase = (
        &'static str,
        Option<TagRules>,
        Option<TagRules>,
        Option<&'static [&'static str]>,
    );

    #[test]
    fn takes_the_exact_tag_path_only_for_a_mapping_of_literal_globs() {
        let literal = |edit: fn(&mut TagRules)| {
            rules(|r| {
                r.glob = strings(&["1.0", "latest"]);
                edit(r);
            })
        };
        let cases: Vec<ExactCase> = vec![
            (
                "literals",
                Some(literal(|_| {})),
                None,
                Some(&["1.0", "latest"]),
            ),
            (
                "duplicates once",
                Some(rules(|r| r.glob = strings(&["a", "b", "a"]))),
                None,
                Some(&["a", "b"]),
            ),
            (
                "star",
                Some(rules(|r| r.glob = strings(&["1.0", "v*"]))),
                None,
                None,
            ),
            (
                "question mark",
                Some(rules(|r| r.glob = strings(&["v?"]))),
                None,
                None,
            ),
            (
                "class",
                Some(rules(|r| r.glob = strings(&["v[12]"]))),
                None,
                None,
            ),
            (
                "alternates",
                Some(rules(|r| r.glob = strings(&["{a,b}"]))),
                None,
                None,
            ),
            (
                "escape",
                Some(rules(|r| r.glob = strings(&["a\\.b"]))),
                None,
                None,
            ),
            (
                "include",
                Some(literal(|r| r.include = strings(&["x"]))),
                None,
                None,
            ),
            (
                "semver",
                Some(literal(|r| r.semver = Some(">=1".into()))),
                None,
                None,
            ),
            (
                "exclude",
                Some(literal(|r| r.exclude = strings(&["x"]))),
                None,
                None,
            ),
            (
                "sort",
                Some(literal(|r| r.sort = Some(TagSort::Alpha))),
                None,
                None,
            ),
            (
                "latest",
                Some(literal(|r| {
                    r.sort = Some(TagSort::Alpha);
                    r.latest = Some(1);
                })),
                None,
                None,
            ),
            (
                "min_tags",
                Some(literal(|r| r.min_tags = Some(1))),
                None,
                None,
            ),
            (
                "immutable_tags",
                Some(literal(|r| r.immutable_tags = Some("v*".into()))),
                None,
                None,
            ),
            (
                "any defaults block",
                Some(literal(|_| {})),
                Some(TagRules::default()),
                None,
            ),
            ("no mapping rules", None, Some(literal(|_| {})), None),
            ("no rules at all", None, None, None),
            ("an empty block", Some(TagRules::default()), None, None),
        ];
        for (name, rules, defaults, expected) in cases {
            let filter = filter(rules.as_ref(), defaults.as_ref());
            let expected = expected.map(strings);
            assert_eq!(filter.exact_tags(), expected.as_deref(), "{name}");
        }
    }

    #[test]
    fn requires_sort_next_to_latest_in_each_block() {
        let latest = rules(|r| r.latest = Some(3));
        let sorted = rules(|r| r.sort = Some(TagSort::Semver));
        let both = rules(|r| {
            r.latest = Some(3);
            r.sort = Some(TagSort::Alpha);
        });
        let cases = [
            (
                "mapping without sort",
                Some(&latest),
                None,
                Some("the mapping's tags block"),
            ),
            (
                "sort only in defaults",
                Some(&latest),
                Some(&sorted),
                Some("the mapping's tags block"),
            ),
            (
                "defaults without sort",
                Some(&sorted),
                Some(&latest),
                Some("defaults.tags"),
            ),
            ("defaults alone", None, Some(&latest), Some("defaults.tags")),
            ("mapping with both", Some(&both), None, None),
            ("defaults with both", None, Some(&both), None),
            (
                "latest from defaults, sort from mapping",
                Some(&sorted),
                Some(&both),
                None,
            ),
        ];
        for (name, rules, defaults, block) in cases {
            let result = TagFilter::new(rules, defaults);
            match block {
                None => assert!(result.is_ok(), "{name}"),
                Some(block) => {
                    let error = result.expect_err(name);
                    let (field, input, message) = invalid_parts(&error);
                    assert_eq!((field, input.as_str()), ("latest", "3"), "{name}");
                    assert!(message.contains("add `sort: semver`"), "{message}");
                    assert!(message.contains(block), "{name}: {message}");
                }
            }
        }
    }

    #[test]
    fn rejects_invalid_globs_naming_the_field() {
        let cases: [(&str, TagRules, Option<TagRules>, &str, &str); 6] = [
            (
                "glob",
                rules(|r| r.glob = strings(&["v*", "[bad"])),
                None,
                "glob",
                "[bad",
            ),
            (
                "include",
                rules(|r| r.include = strings(&["{a"])),
                None,
                "include",
                "{a",
            ),
            (
                "exclude",
                rules(|r| r.exclude = strings(&["a["])),
                None,
                "exclude",
                "a[",
            ),
            (
                "immutable_tags",
                rules(|r| r.immutable_tags = Some("v[".into())),
                None,
                "immutable_tags",
                "v[",
            ),
            (
                "defaults exclude",
                TagRules::default(),
                Some(rules(|r| r.exclude = strings(&["[d"]))),
                "exclude",
                "[d",
            ),
            (
                "glob from defaults",
                TagRules::default(),
                Some(rules(|r| r.glob = strings(&["{x"]))),
                "glob",
                "{x",
            ),
        ];
        for (name, rules, defaults, expected_field, pattern) in cases {
            let error = TagFilter::new(Some(&rules), defaults.as_ref()).expect_err(name);
            let (field, input, message) = invalid_parts(&error);
            assert_eq!((field, input.as_str()), (expected_field, pattern), "{name}");
            assert!(message.contains(&format!("'{pattern}'")), "{message}");
            assert_eq!(
                message.contains("defaults.tags"),
                defaults.is_some(),
                "{name}: {message}"
            );
        }
    }

    #[test]
    fn finds_the_subject_of_cosign_tags() {
        let sha512 = format!("{H64}{H64}");
        let cases = [
            (format!("sha256-{H64}.sig"), Some(format!("sha256:{H64}"))),
            (format!("sha256-{H64}.att"), Some(format!("sha256:{H64}"))),
            (format!("sha256-{H64}.sbom"), Some(format!("sha256:{H64}"))),
            (
                format!("sha512-{sha512}.sig"),
                Some(format!("sha512:{sha512}")),
            ),
            (format!("sha256-{H64}"), None),
            (format!("sha256-{H64}.txt"), None),
            (format!("sha256-{}.sig", &H64[1..]), None),
            (format!("sha256-{}.sig", H64.to_uppercase()), None),
            (format!("md5-{H64}.sig"), None),
            (format!("sha256:{H64}.sig"), None),
            ("v1.sig".to_owned(), None),
            ("latest".to_owned(), None),
        ];
        for (tag, expected) in cases {
            let subject = cosign_subject(&tag).map(|digest| digest.to_string());
            assert_eq!(subject, expected, "{tag}");
        }
    }

    #[test]
    fn matches_immutable_tags() {
        let r = rules(|r| r.immutable_tags = Some("v*.*.*".into()));
        let defaults = rules(|r| r.immutable_tags = Some("*".into()));
        let cases = [
            (Some(&r), None, "v1.2.3", true),
            (Some(&r), None, "v1.2", false),
            (Some(&r), None, "latest", false),
            (Some(&r), Some(&defaults), "latest", false),
            (None, Some(&defaults), "latest", true),
            (None, None, "v1.2.3", false),
        ];
        for (rules, defaults, tag, expected) in cases {
            let filter = filter(rules, defaults);
            assert_eq!(filter.is_immutable(tag), expected, "{tag}");
        }
    }

    #[test]
    fn checks_min_tags() {
        let selection = Selection {
            kept: strings(&["1.0"]),
            dropped: vec![],
        };
        let two = rules(|r| r.min_tags = Some(2));
        let one = rules(|r| r.min_tags = Some(1));
        assert!(
            filter(Some(&one), None)
                .check_min_tags("app", &selection)
                .is_ok()
        );
        assert!(filter(None, None).check_min_tags("app", &selection).is_ok());
        // From the defaults too.
        let error = filter(None, Some(&two))
            .check_min_tags("library/app", &selection)
            .expect_err("below min_tags");
        match error.kind() {
            ErrorKind::BelowMinTags {
                repository,
                selected,
                min_tags,
            } => assert_eq!(
                (repository.as_str(), *selected, *min_tags),
                ("library/app", 1, 2)
            ),
            other => panic!("expected BelowMinTags, got {other:?}"),
        }
        assert!(error.to_string().contains("library/app"), "{error}");
    }

    #[test]
    fn describes_the_filter_in_one_line() {
        let full = rules(|r| {
            r.glob = strings(&["v*"]);
            r.semver = Some(" >=1.2 ".into());
            r.exclude = strings(&["*-rc*"]);
            r.sort = Some(TagSort::Semver);
            r.latest = Some(3);
        });
        let more = rules(|r| {
            r.include = strings(&["stable", "*-lts"]);
            r.min_tags = Some(1);
            r.immutable_tags = Some("v*.*.*".into());
        });
        let defaults = rules(|r| r.exclude = strings(&["*-dev"]));
        let exact = rules(|r| r.glob = strings(&["1.0", "2.0"]));
        let cases = [
            (
                Some(&full),
                None,
                "glob [v*], semver >=1.2, exclude [*-rc*], sort semver, latest 3",
            ),
            (
                Some(&more),
                Some(&defaults),
                "include [stable, *-lts], defaults exclude [*-dev], min_tags 1, immutable_tags v*.*.*",
            ),
            (Some(&exact), None, "exact tags [1.0, 2.0]"),
            (None, None, "all tags"),
        ];
        for (rules, defaults, expected) in cases {
            assert_eq!(filter(rules, defaults).describe(), expected);
        }
    }

    #[test]
    fn displays_drop_reasons() {
        let cases = [
            (DropReason::Glob, "not matched by glob"),
            (DropReason::Semver, "outside version range"),
            (exclude("*-dev"), "excluded by '*-dev'"),
            (
                DropReason::DefaultExclude("*-slim".into()),
                "excluded by defaults '*-slim'",
            ),
            (builtin("*-rc*"), "excluded by built-in '*-rc*'"),
            (DropReason::Latest, "beyond latest"),
            (
                DropReason::ReferrersIndex,
                "referrers index, copied with its subject's referrers",
            ),
        ];
        for (reason, expected) in cases {
            assert_eq!(reason.to_string(), expected);
        }
    }

    /// `select` never loses or duplicates a tag: kept and dropped are disjoint and together
    /// are the input's distinct tags.
    #[test]
    fn select_partitions_every_listing() {
        // xorshift64*, seeded: reproducible without a dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        };
        let prefixes = ["", "v", "V", "sha256-", "sha512-", "release-"];
        let suffixes = [
            "",
            "-rc1",
            "-RC.2",
            "-alpine",
            "-beta.2",
            "-r3",
            "-SNAPSHOT",
            "-debug",
            "-dev",
            "-lts",
            ".sig",
        ];
        let words = ["latest", "edge", "stable", "nightly", "main"];
        let filters = [
            filter(None, None),
            filter(
                Some(&rules(|r| {
                    r.glob = strings(&["v*", "1.*"]);
                    r.include = strings(&["latest", "*-lts", "stable"]);
                    r.semver = Some(">=1, <3 || ^5".into());
                    r.exclude = strings(&["*-debug", "edge"]);
                    r.sort = Some(TagSort::Semver);
                    r.latest = Some(7);
                })),
                Some(&rules(|r| r.exclude = strings(&["*-dev"]))),
            ),
            filter(
                Some(&rules(|r| {
                    r.include = strings(&["main", "*-rc*"]);
                    r.sort = Some(TagSort::Alpha);
                    r.latest = Some(3);
                })),
                None,
            ),
            filter(
                Some(&rules(|r| r.glob = strings(&["1.0", "latest", "2.1-rc1"]))),
                None,
            ),
        ];
        for round in 0..200 {
            let count = next(120);
            let tags: Vec<String> = (0..count)
                .map(|_| match next(10) {
                    0 => words[next(words.len())].to_owned(),
                    1 => format!("sha256-{H64}"),
                    2 => format!("sha256-{H64}{}", suffixes[next(suffixes.len())]),
                    _ => {
                        let parts = 1 + next(3);
                        let version: Vec<String> =
                            (0..parts).map(|_| next(6).to_string()).collect();
                        format!(
                            "{}{}{}",
                            prefixes[next(prefixes.len())],
                            version.join("."),
                            suffixes[next(suffixes.len())]
                        )
                    }
                })
                .collect();
            let distinct: HashSet<&str> = tags.iter().map(String::as_str).collect();
            for (index, filter) in filters.iter().enumerate() {
                let selection = filter.select(&tags);
                let kept: HashSet<&str> = selection.kept.iter().map(String::as_str).collect();
                let dropped: HashSet<&str> = selection
                    .dropped
                    .iter()
                    .map(|(tag, _)| tag.as_str())
                    .collect();
                let context = format!("round {round}, filter {index}, tags {tags:?}");
                assert_eq!(
                    kept.len(),
                    selection.kept.len(),
                    "kept duplicates: {context}"
                );
                assert_eq!(
                    dropped.len(),
                    selection.dropped.len(),
                    "dropped duplicates: {context}"
                );
                assert!(kept.is_disjoint(&dropped), "overlap: {context}");
                assert_eq!(&kept | &dropped, distinct, "lost tags: {context}");
            }
        }
    }
}
