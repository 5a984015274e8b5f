#!/usr/bin/env bash
# Create the kind cluster of kind-config.yaml and a local registry container (kind-registry), reachable
# from the host as localhost:5001 and from the nodes as kind-registry:5000. This is kind's documented
# local-registry recipe: https://kind.sigs.k8s.io/docs/user/local-registry/
#
# Usage: hack/kind-up.sh [--deploy]
#   --deploy  also build the controller image, push it to localhost:5001, and install the chart with
#             the pushed image pinned by digest (needs helm: python hack/get-helm.py).
#
# Needs docker and kind on PATH. Idempotent: an existing registry or cluster is reused.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cluster="${KIND_CLUSTER_NAME:-imprimatur}"
reg_name="kind-registry"
reg_port="5001"
# Pin by digest in CI (docker buildx imagetools inspect registry:2).
reg_image="${KIND_REGISTRY_IMAGE:-registry:2}"
deploy=false

for arg in "$@"; do
  case "$arg" in
    --deploy) deploy=true ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "$tool not found on PATH" >&2; exit 1; }
done

# 1. The registry container.
if [ "$(docker inspect -f '{{.State.Running}}' "$reg_name" 2>/dev/null || true)" != "true" ]; then
  docker rm -f "$reg_name" >/dev/null 2>&1 || true
  docker run -d --restart=always -p "127.0.0.1:${reg_port}:5000" --network bridge \
    --name "$reg_name" "$reg_image"
fi

# 2. The cluster (containerd reads /etc/containerd/certs.d: see kind-config.yaml).
if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --config "$root/kind-config.yaml" --wait 120s
fi

# 3. Tell every node's containerd that localhost:5001 is the registry container.
registry_dir="/etc/containerd/certs.d/localhost:${reg_port}"
for node in $(kind get nodes --name "$cluster"); do
  docker exec "$node" mkdir -p "$registry_dir"
  printf '[host."http://%s:5000"]\n' "$reg_name" | docker exec -i "$node" cp /dev/stdin "$registry_dir/hosts.toml"
done

# 4. Put the registry on the kind network, so the nodes can resolve kind-registry.
if [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$reg_name")" = "null" ]; then
  docker network connect kind "$reg_name"
fi

# 5. Document the local registry (KEP-1755).
kubectl --context "kind-$cluster" apply -f - <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${reg_port}"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
YAML

if [ "$deploy" = false ]; then
  echo "cluster kind-$cluster is up; registry at localhost:${reg_port}"
  exit 0
fi

# 6. Build, push, and install pinned by digest.
image="localhost:${reg_port}/imprimatur"
tag="dev"
docker build -t "${image}:${tag}" "$root"
docker push "${image}:${tag}"
digest="$(docker inspect --format '{{index .RepoDigests 0}}' "${image}:${tag}")"
digest="${digest##*@}"
helm="$(python3 "$root/hack/get-helm.py")"
"$helm" upgrade --install imprimatur "$root/charts/imprimatur" \
  --kube-context "kind-$cluster" --namespace imprimatur-system --create-namespace \
  --set image.repository="$image" --set image.tag="$tag" --set image.digest="$digest" \
  --set-string registryConfig="$(printf 'mirrors:\n  "localhost:%s":\n    endpoint: ["http://%s:5000"]\n' "$reg_port" "$reg_name")" \
  --wait --timeout 5m
# Inside the cluster, localhost:5001 is not the registry: the registries.yaml above sends the
# controller's lookups for localhost:5001 to the registry container, as containerd's hosts.toml does.
echo "imprimatur installed from ${image}@${digest}"
