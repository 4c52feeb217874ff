//! `ocync auth check`: for every configured registry, obtain a real token for the scopes a sync
//! needs and say which credential provider answered, without printing any secret.

use std::collections::BTreeSet;

use ocync_transport::Endpoint;

use crate::cli::AuthCheckArgs;
use crate::credentials::Providers;
use crate::exit::Code;
use crate::{config, endpoints};

pub(crate) async fn check(args: AuthCheckArgs) -> anyhow::Result<Code> {
    let mut lines = Vec::new();
    let (mut failed, mut denied) = (false, false);
    for path in &args.configs {
        let config = config::load(path)?;
        let providers = Providers::from_env()?;
        for (alias, registry) in config.registries() {
            let config::Endpoint::Remote { host, .. } = &registry.endpoint else {
                continue;
            };
            // What a sync needs here: pull on the repositories it reads, push on those it writes.
            let mut needs: BTreeSet<(String, bool)> = BTreeSet::new();
            for m in config.mappings() {
                if &m.source == alias && !m.glob {
                    needs.insert((m.from.clone(), false));
                }
                if m.targets.contains(alias) && !m.glob {
                    needs.insert((
                        if m.to.is_empty() {
                            m.from.clone()
                        } else {
                            m.to.clone()
                        },
                        true,
                    ));
                }
            }
            let chain = providers.for_registry(registry, host)?;
            let provider = match chain.resolve(host).await {
                Ok(Some((name, _))) => name,
                Ok(None) => "anonymous",
                Err(e) => {
                    failed = true;
                    denied |= e.is_auth_failure();
                    lines.push(format!("FAILED  {alias} ({host}): {}", one_line(&e)));
                    continue;
                }
            };
            let Endpoint::Registry(client) = endpoints::endpoint(registry, &providers)? else {
                continue;
            };
            let mut done = Vec::new();
            let mut problem = None;
            if needs.is_empty() {
                match client.ping().await {
                    Ok(()) => done.push("reachable".to_owned()),
                    Err(e) => problem = Some(e),
                }
            }
            for (repository, push) in &needs {
                match client.check_access(repository, *push).await {
                    Ok(()) => done.push(format!(
                        "{} on {repository}",
                        if *push { "pull, push" } else { "pull" }
                    )),
                    Err(e) => {
                        problem = Some(e);
                        break;
                    }
                }
            }
            match problem {
                None => lines.push(format!(
                    "ok      {alias} ({host}) via {provider}: {}",
                    done.join("; ")
                )),
                Some(e) => {
                    failed = true;
                    denied |= e.is_unauthorized();
                    lines.push(format!(
                        "FAILED  {alias} ({host}) via {provider}: {}",
                        one_line(&e)
                    ));
                }
            }
        }
    }
    #[expect(
        clippy::print_stdout,
        reason = "the check results are the command's output"
    )]
    for line in &lines {
        println!("{line}");
    }
    Ok(match (failed, denied) {
        (false, _) => Code::Ok,
        (true, true) => Code::Auth,
        (true, false) => Code::Failure,
    })
}

/// An error and its causes on one line.
fn one_line(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
