#!/usr/bin/env bash
# Install what the test suite needs, then run every check CI runs: formatting, clippy with
# warnings denied, and all tests (unit, integration against real registries, doc tests).
#
#   scripts/test.sh            everything
#   scripts/test.sh -- <args>  extra arguments for `cargo test` (e.g. a test name filter)
#
# Needs: the Rust toolchain, apt (Debian/Ubuntu) to install docker-registry and nginx when missing, and
# python3 with pip (PyPI) for moto, which plays the ECR API in the tests, and for the Helm chart
# tests (helm-python-sdk, kubernetes-validate).
# Tests start their own registries on 127.0.0.1 with random ports; nothing leaves loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

extra=()
if [ "${1:-}" = "--" ]; then shift; extra=("$@"); fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

need_pkgs=()
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need_pkgs+=(docker-registry)
# nginx fronts the registry with limit_req (429s, Retry-After, body caps) in the pressure tests.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing ${need_pkgs[*]} (apt)" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# moto[server] plays the ECR control plane for ocync-auth's ECR tests (ocync_auth::testing
# looks for target/moto-venv/bin/moto_server). A venv when python3 can make one, else a plain
# `pip install --target` with a small launcher in the same place.
moto_dir=target/moto-venv
if [ ! -x "$moto_dir/bin/moto_server" ]; then
  echo "installing moto[server] into $moto_dir (pip)" >&2
  rm -rf "$moto_dir"
  if python3 -m venv "$moto_dir" >/dev/null 2>&1 && [ -x "$moto_dir/bin/pip" ]; then
    "$moto_dir/bin/pip" install -q 'moto[server]==5.2.5' >/dev/null
  else
    rm -rf "$moto_dir"
    python3 -m pip install -q --no-warn-conflicts --target "$moto_dir/lib" 'moto[server]==5.2.5' >/dev/null
    mkdir -p "$moto_dir/bin"
    printf '#!/bin/sh\nPYTHONPATH="%s${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m moto.server "$@"\n' \
      "$(pwd)/$moto_dir/lib" >"$moto_dir/bin/moto_server"
    chmod +x "$moto_dir/bin/moto_server"
  fi
fi

# The Helm chart: rendered by Helm's engine (PyPI helm-python-sdk, no helm binary or cluster),
# checked field by field and against the Kubernetes API schemas; installs into target/chart-venv.
echo "== helm chart (charts/ocync)" >&2
scripts/chart-test.sh

# Tests must never reach a cloud metadata service or a real cloud host.
export AWS_EC2_METADATA_DISABLED=true

# The free space decides whether a cold build fits (a CI disk once ran out mid-build).
df -h . 2>/dev/null | sed 's/^/disk: /' >&2 || true

echo "== cargo fmt" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test" >&2
cargo test --workspace --locked "${extra[@]}"
echo "== feature sets (without the cloud providers, and each alone)" >&2
for features in "" "ecr" "acr"; do
  cargo check --locked -p ocync-cli --no-default-features ${features:+--features "$features"}
done
echo "== cargo doc (libraries, warnings denied)" >&2
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked -p ocync-core -p ocync-auth -p ocync-transport
du -sh target 2>/dev/null | sed 's/^/build size: /' >&2 || true
echo "== all checks passed" >&2
