#!/usr/bin/env bash
# Validate deploy/ without Docker or a cluster, and without the network (CI reaches only the
# package registries): hadolint for the Dockerfile, yamllint for every YAML file, the
# compose-spec JSON schema vendored in check-jsonschema for the compose file, and
# kubernetes-validate's bundled OpenAPI schemas (strict: unknown fields fail) for the manifests,
# against the oldest Kubernetes we support and the newest bundled. Also ruff on deploy/*.py
# (the image's HEALTHCHECK script), which the Makefile's ruff paths do not cover.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
K8S_MIN_VERSION=${K8S_MIN_VERSION:-1.30.0}
manifests=(deploy/k8s/*.yaml deploy/k8s/examples/*.yaml)

step() { printf '== %s\n' "$*"; }

step "hadolint deploy/Dockerfile"
"$BIN/hadolint" deploy/Dockerfile

step "yamllint deploy/"
"$BIN/yamllint" --strict -c deploy/.yamllint deploy

step "check-jsonschema (compose-spec) deploy/docker-compose.yml"
"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker-compose.yml

step "kubernetes-validate --strict (${K8S_MIN_VERSION} and latest bundled) ${#manifests[@]} files"
"$BIN/kubernetes-validate" --strict --quiet -k "$K8S_MIN_VERSION" "${manifests[@]}"
"$BIN/kubernetes-validate" --strict --quiet "${manifests[@]}"

step "ruff deploy/*.py"
"$BIN/ruff" check deploy
"$BIN/ruff" format --check deploy

echo "deploy/ is valid"
