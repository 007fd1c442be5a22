#!/usr/bin/env bash
# Builds helm once from the Go module proxy into ~/.cache/byok-operator/helm/<version>/
# (no binary downloads needed) and links it into the directory given as $1.
set -euo pipefail
HELM_VERSION=${BYOK_HELM_VERSION:-v3.21.4}
CACHE=${BYOK_CACHE:-$HOME/.cache/byok-operator}
dest=${1:?usage: install-helm.sh BIN_DIR}
out="$CACHE/helm/$HELM_VERSION"
if [ -n "${BYOK_HELM:-}" ]; then ln -sf "$BYOK_HELM" "$dest/helm"; exit 0; fi
if [ ! -x "$out/helm" ]; then
  mkdir -p "$out"
  exec 9>"$out/.lock"; flock 9
  if [ ! -x "$out/helm" ]; then
    echo "install-helm: building helm $HELM_VERSION with Go (one time)" >&2
    GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$out" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  fi
fi
ln -sf "$out/helm" "$dest/helm"
