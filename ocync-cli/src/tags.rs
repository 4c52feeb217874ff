//! `ocync tags`: a repository's tags, and which of them a filter selects (a preview of a
//! mapping's `tags:` block).

use anyhow::Context as _;

use ocync_transport::{Endpoint, Location, Registries, TagFilter, TagRules, TagSort};

use crate::cli::{SortArg, TagsArgs};
use crate::exit::Code;
use crate::{config, endpoints};

pub(crate) async fn run(args: TagsArgs) -> anyhow::Result<Code> {
    let location: Location = args.repository.parse()?;
    let repository = match &location {
        Location::Registry(reference) => {
            let client = match &args.config {
                Some(path) => configured_client(path, reference.registry())?,
                None => None,
            };
            match client {
                Some(client) => {
                    ocync_transport::Repository::registry(client, reference.repository())
                }
                None => {
                    Registries::from_docker_config()?
                        .open(&location, false)
                        .await?
                }
            }
        }
        Location::Layout { .. } => {
            Registries::from_docker_config()?
                .open(&location, false)
                .await?
        }
        _ => anyhow::bail!(
            "'{}' is neither a registry repository nor an oci: layout",
            args.repository
        ),
    };
    let all = repository
        .tags()
        .await
        .with_context(|| format!("cannot list the tags of {}", repository.display_name()))?;

    let mut rules = TagRules::default();
    rules.glob.clone_from(&args.glob);
    rules.include.clone_from(&args.include);
    rules.semver.clone_from(&args.semver);
    rules.exclude.clone_from(&args.exclude);
    rules.sort = args.sort.map(|s| match s {
        SortArg::Semver => TagSort::Semver,
        SortArg::Alpha => TagSort::Alpha,
    });
    rules.latest = args.latest;
    let any_rule = rules != TagRules::default();
    let filter = TagFilter::new(any_rule.then_some(&rules), None)?;
    let selection = filter.select(&all);
    for (tag, reason) in &selection.dropped {
        tracing::debug!("dropped {tag}: {reason}");
    }
    tracing::info!(
        "{} of {} tags selected by {}",
        selection.kept.len(),
        all.len(),
        if any_rule {
            filter.describe()
        } else {
            "the default filter (pre-release tags excluded)".to_owned()
        }
    );
    #[expect(
        clippy::print_stdout,
        reason = "the selected tags are the command's output"
    )]
    for tag in &selection.kept {
        println!("{tag}");
    }
    Ok(Code::Ok)
}

/// The client of the configured registry whose host is `registry`, if any.
fn configured_client(
    path: &std::path::Path,
    registry: &str,
) -> anyhow::Result<Option<ocync_transport::Client>> {
    let config = config::load(path)?;
    let providers = crate::credentials::Providers::from_env()?;
    for r in config.registries().values() {
        if let config::Endpoint::Remote { host, .. } = &r.endpoint
            && host.eq_ignore_ascii_case(registry)
            && let Endpoint::Registry(client) = endpoints::endpoint(r, &providers)?
        {
            return Ok(Some(client));
        }
    }
    Ok(None)
}
