//! What a person sees: help texts, error messages and the end-of-run summary, pinned as insta
//! snapshots (`tests/snapshots/`; review changes with `cargo insta review` or by reading the
//! `.snap.new` files), plus shell completions and `--shard` splitting a mirror.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::ocync;
use ocync_transport::testing::{Fixture, ImageFixture};

/// Run `ocync` with `args`: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = ocync().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn help_texts() {
    for command in [
        &["--help"][..],
        &["sync", "--help"],
        &["watch", "--help"],
        &["copy", "--help"],
        &["completions", "--help"],
    ] {
        let (code, out, _) = run(command);
        assert_eq!(code, 0, "{command:?}");
        let name = format!("help_{}", command[..command.len() - 1].join("_"));
        insta::assert_snapshot!(name.trim_end_matches('_'), out);
    }
}

#[test]
fn every_subcommand_has_an_example() {
    for command in [
        "copy",
        "sync",
        "watch",
        "validate",
        "expand",
        "tags",
        "completions",
    ] {
        let (_, out, _) = run(&[command, "--help"]);
        assert!(out.contains("Example"), "{command} --help has no example");
    }
    let (_, out, _) = run(&["auth", "check", "--help"]);
    assert!(out.contains("Example"));
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_ocync()"),
        ("zsh", "#compdef ocync"),
        ("fish", "complete -c ocync"),
    ] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(marker), "{shell}: {out:.200}");
        assert!(out.contains("watch") && out.contains("shard"), "{shell}");
    }
}

/// Four repositories of one image each, as OCI layouts under `<dir>/layouts`, and a config
/// syncing each of them into `<dir>/out`.
fn four_repositories(dir: &Path) -> std::path::PathBuf {
    let names = ["team/api", "team/web", "team/worker", "tools/cli"];
    for (i, name) in names.iter().enumerate() {
        let fixture = Fixture::single(ImageFixture::image(500 + i as u64, "linux/amd64", &[1000]));
        fixture
            .write_layout(&dir.join("layouts").join(name), "v1")
            .unwrap();
    }
    let config = dir.join("ocync.yaml");
    let mappings: String = names
        .iter()
        .map(|name| format!("  - from: {name}\n    to: {name}\n"))
        .collect();
    std::fs::write(
        &config,
        format!(
            "global:\n  cache_dir: cache\nregistries:\n  src: {{ url: oci:layouts }}\n  dst: {{ url: oci:out }}\n\
             defaults: {{ source: src, targets: dst }}\nmappings:\n{mappings}"
        ),
    )
    .unwrap();
    config
}

/// The repositories a run wrote.
fn written(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let out = dir.join("out");
    for group in std::fs::read_dir(&out).into_iter().flatten().flatten() {
        for repo in std::fs::read_dir(group.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if repo.path().join("index.json").exists() {
                found.insert(format!(
                    "{}/{}",
                    group.file_name().to_string_lossy(),
                    repo.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

#[test]
fn shards_split_the_repositories_without_overlap() {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for index in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let config = four_repositories(dir.path());
        let shard = format!("{index}/2");
        let (code, _, err) = run(&["sync", "-c", config.to_str().unwrap(), "--shard", &shard]);
        assert_eq!(code, 0, "{err}");
        let mine = written(dir.path());
        // Each shard keeps its own cache file, so shards may share a cache volume.
        let cache = dir
            .path()
            .join(format!("cache/state-shard-{index}-of-2.json"));
        assert!(cache.exists() || mine.is_empty(), "{}", cache.display());
        assert!(!dir.path().join("cache/state.json").exists());
        total += mine.len();
        seen.extend(mine);
    }
    assert_eq!(total, 4, "no repository in two shards");
    assert_eq!(seen.len(), 4, "every repository in one shard: {seen:?}");

    // An Indexed Job pod gives only N; the index comes from JOB_COMPLETION_INDEX, and the same
    // index picks the same repositories.
    let dir = tempfile::tempdir().unwrap();
    let config = four_repositories(dir.path());
    let out = ocync()
        .args(["sync", "-c", config.to_str().unwrap(), "--shard", "2"])
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let dir0 = tempfile::tempdir().unwrap();
    let config0 = four_repositories(dir0.path());
    run(&["sync", "-c", config0.to_str().unwrap(), "--shard", "1/2"]);
    assert_eq!(written(dir.path()), written(dir0.path()));
}

#[test]
fn bad_shards_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = four_repositories(dir.path());
    let config = config.to_str().unwrap();
    let mut messages = Vec::new();
    for shard in ["4/4", "x/2", "1/0", "3"] {
        let out = ocync()
            .args(["sync", "-c", config, "--shard", shard])
            .env_remove("JOB_COMPLETION_INDEX")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "--shard {shard}");
        messages.push(String::from_utf8(out.stderr).unwrap());
    }
    insta::assert_snapshot!("bad_shards", messages.join(""));
}

#[test]
fn summary_of_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let config = four_repositories(dir.path());
    let config = config.to_str().unwrap();
    let (code, out, err) = run(&["sync", "-c", config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "logs never go to stdout: {out}");
    let summary = |err: &str| {
        err.lines()
            .filter(|l| l.contains("ocync::sync"))
            .map(|l| {
                // Drop the timestamp and the time taken: the rest is stable.
                let l = l.split_once(" INFO ").map_or(l, |(_, rest)| rest);
                match l.rsplit_once(", ") {
                    Some((head, time)) if time.ends_with('s') => format!("{head}, <time>"),
                    _ => l.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    insta::assert_snapshot!("summary_cold", summary(&err));
    let (code, _, err) = run(&["sync", "-c", config]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("summary_warm", summary(&err));
}

/// On a terminal (a pseudo-terminal from util-linux `script`) the run draws a progress bar and
/// clears it before the summary; piped, the same run has no bar and no escape sequences.
#[test]
fn a_progress_bar_only_on_a_terminal() {
    std::process::Command::new("script")
        .arg("--version")
        .output()
        .expect("util-linux `script` is needed for the terminal test (apt-get install bsdutils)");
    let dir = tempfile::tempdir().unwrap();
    let config = four_repositories(dir.path());
    let command = format!(
        "'{}' sync -c '{}'",
        env!("CARGO_BIN_EXE_ocync"),
        config.display()
    );
    let out = ocync_at_a_terminal(&command);
    assert!(out.contains(" images "), "{out}");
    assert!(out.contains("uploaded ("), "{out}");
    assert!(out.contains("summary: 4 mappings"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let config = four_repositories(dir.path());
    let (code, _, err) = run(&["sync", "-c", config.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        !err.contains(" images ") && !err.contains('\u{1b}'),
        "{err}"
    );
}

/// Run a shell command line under a pseudo-terminal; everything it wrote to the terminal.
fn ocync_at_a_terminal(command: &str) -> String {
    let out = ocync()
        .get_envs()
        .fold(
            &mut std::process::Command::new("script"),
            |cmd, (key, value)| match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            },
        )
        .args(["-qefc", command, "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn json_logs_and_quiet_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = four_repositories(dir.path());
    let config = config.to_str().unwrap();
    let (code, out, err) = run(&["sync", "-c", config, "--log-format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty());
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("summary:"))),
        "{err}"
    );
    assert!(lines.iter().all(|l| l["level"].is_string()));

    let dir = tempfile::tempdir().unwrap();
    let config = four_repositories(dir.path());
    let (code, out, err) = run(&["sync", "-q", "-c", config.to_str().unwrap()]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
}

/// A configuration with several mistakes: every one is reported, each with its place, the key
/// and what to do.
#[test]
fn configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ocync.yaml");
    std::fs::write(
        &path,
        "registries:\n  src: { url: cgr.dev }\n  dst: { url: registry.example.com, max_concurent: 4 }\n\
         defaults: { source: src, targets: dts }\nmappings:\n  - from: chainguard/static\n    tags: { semver: '>=1.x' }\n",
    )
    .unwrap();
    let (code, out, err) = run(&["validate", path.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(out.is_empty());
    let err = err.replace(&path.display().to_string(), "<config>");
    insta::assert_snapshot!("configuration_errors", err);
}
