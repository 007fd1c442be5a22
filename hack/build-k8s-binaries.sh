#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and etcd from the Go module proxy with the
# machine's Go, once, into a cache outside the repository:
#   ${BYOK_CACHE:-~/.cache/byok-operator}/k8s/<version>/bin/
# Prints that bin directory on stdout. Repeat calls return at once.
#
# k8s.io/kubernetes' go.mod requires its staging modules at v0.0.0, so the
# wrapper module replaces each with the matching published v0.<minor>.<patch>
# (kubernetes/kubernetes#79384). etcd gets its own module: its server pins
# different grpc/otel versions than the apiserver's client.
set -euo pipefail

K8S_VERSION=${BYOK_K8S_VERSION:-v1.34.4}
ETCD_VERSION=${BYOK_ETCD_VERSION:-v3.6.5}
CACHE=${BYOK_CACHE:-$HOME/.cache/byok-operator}
ROOT="$CACHE/k8s/$K8S_VERSION"
BIN="$ROOT/bin"
STAMP="$BIN/.complete-$ETCD_VERSION-kcm"

if [ -f "$STAMP" ]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { echo "build-k8s-binaries: Go is required on PATH to build kube-apiserver/etcd/kubectl" >&2; exit 1; }

mkdir -p "$ROOT" "$BIN"
exec 9>"$ROOT/.lock"
flock 9
if [ -f "$STAMP" ]; then echo "$BIN"; exit 0; fi

log() { echo "build-k8s-binaries: $*" >&2; }
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

staging_minor="v0.${K8S_VERSION#v1.}"
k8s_minor=${K8S_VERSION#v1.}
k8s_minor=${k8s_minor%%.*}
k8s_mod="$ROOT/src-k8s"
mkdir -p "$k8s_mod"
cd "$k8s_mod"
if [ ! -f go.mod ]; then
  log "preparing k8s.io/kubernetes@$K8S_VERSION (staging modules at $staging_minor)"
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  go_line=$(grep -m1 '^go ' "$gomod")
  {
    echo "module byok.local/k8sbins"
    echo
    echo "$go_line"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    # every k8s.io module that kubernetes requires at v0.0.0 is a staging module
    grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0\s*$' "$gomod" | awk -v v="$staging_minor" '{print "replace " $1 " => " $1 " " v}'
  } > go.mod
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
fi
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor"
go mod tidy >&2 2>"$ROOT/tidy.log" || { cat "$ROOT/tidy.log" >&2; exit 1; }
if [ ! -x "$BIN/kube-apiserver" ]; then
  log "building kube-apiserver (several minutes on 2 cores)"
  go build -trimpath -ldflags "$ldflags" -o "$BIN/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
  mv "$BIN/kube-apiserver.tmp" "$BIN/kube-apiserver"
fi
# Only its garbage collector and namespace controller run in tests (no kubelet, no pods).
if [ ! -x "$BIN/kube-controller-manager" ]; then
  log "building kube-controller-manager"
  go build -trimpath -ldflags "$ldflags" -o "$BIN/kube-controller-manager.tmp" k8s.io/kubernetes/cmd/kube-controller-manager >&2
  mv "$BIN/kube-controller-manager.tmp" "$BIN/kube-controller-manager"
fi
if [ ! -x "$BIN/kubectl" ]; then
  log "building kubectl"
  go build -trimpath -ldflags "$ldflags" -o "$BIN/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl >&2
  mv "$BIN/kubectl.tmp" "$BIN/kubectl"
fi

etcd_mod="$ROOT/src-etcd"
mkdir -p "$etcd_mod"
cd "$etcd_mod"
if [ ! -f go.mod ]; then
  log "preparing go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  cat > go.mod <<GOMOD
module byok.local/etcdbin

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
fi
go mod tidy >&2
if [ ! -x "$BIN/etcd" ]; then
  log "building etcd"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" . >&2
  mv "$BIN/etcd.tmp" "$BIN/etcd"
fi
touch "$STAMP"
echo "$BIN"
