#!/usr/bin/env bash
# Test the Helm chart (charts/ocync) without a helm binary or a cluster: Helm's own engine
# (helm-python-sdk bundles Helm's Go SDK as a shared library) renders the chart for every mode,
# identity provider and option, lints it, and charts/tests/test_chart.py checks the objects
# field by field and against the Kubernetes API schemas (kubernetes-validate).
#
#   scripts/chart-test.sh            all chart tests
#   scripts/chart-test.sh <args>     arguments for `python -m unittest` instead of discovery,
#                                    e.g. test_chart.WatchMode (run from charts/tests)
#
# Needs: python3 with pip (PyPI) and the venv module, or pip alone (then a `pip install --target`
# directory is used). Nothing is installed outside target/chart-venv; no root needed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Exact versions the tests were written against: helm-python-sdk 0.2.2 carries Helm v4.2.3;
# kubernetes-validate 1.37.0 carries the Kubernetes API schemas of 1.25 to 1.37 (the rest are
# its dependencies, pinned too).
reqs=(
  'helm-python-sdk==0.2.2' 'PyYAML==6.0.3' 'kubernetes-validate==1.37.0'
  'jsonschema==4.26.0' 'jsonschema-specifications==2025.9.1' 'referencing==0.37.0'
  'rpds-py==2026.9.1' 'attrs==26.1.0' 'importlib_resources==7.1.0' 'packaging==26.4'
  'typing_extensions==4.16.0'
)
venv=$PWD/target/chart-venv
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
# No __pycache__ left in charts/tests (it is not in .gitignore).
export PYTHONDONTWRITEBYTECODE=1

have_reqs() { # python: the interpreter to check
  "$1" - "${reqs[@]}" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
for req in sys.argv[1:]:
    name, _, want = req.partition("==")
    assert version(name) == want, (name, version(name), want)
import helm_python, kubernetes_validate, yaml  # the native library loads
EOF
}

python=
if [ -x "$venv/bin/python" ] && have_reqs "$venv/bin/python"; then
  python=$venv/bin/python
elif [ -d "$venv/lib/site" ] && PYTHONPATH="$venv/lib/site" have_reqs python3; then
  python=python3
  PYTHONPATH="$venv/lib/site${PYTHONPATH:+:$PYTHONPATH}"; export PYTHONPATH
else
  echo "installing helm-python-sdk, kubernetes-validate and PyYAML into target/chart-venv (pip)" >&2
  rm -rf "$venv"
  if python3 -m venv "$venv" >/dev/null 2>&1 && [ -x "$venv/bin/pip" ]; then
    "$venv/bin/pip" install -q "${reqs[@]}" >/dev/null
    python=$venv/bin/python
  else
    # No venv module (Debian's python3 without python3-venv): a plain target directory.
    rm -rf "$venv"
    python3 -m pip install -q --no-warn-conflicts \
      --target "$venv/lib/site" "${reqs[@]}" >/dev/null
    python=python3
    PYTHONPATH="$venv/lib/site${PYTHONPATH:+:$PYTHONPATH}"; export PYTHONPATH
  fi
  have_reqs "$python" || { echo "chart-test: ${reqs[*]} did not install into $venv" >&2; exit 1; }
fi

if [ $# -gt 0 ]; then
  cd charts/tests
  exec "$python" -m unittest -v "$@"
fi
exec "$python" -m unittest discover -s charts/tests -t charts/tests -v
