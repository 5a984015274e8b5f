#!/usr/bin/env bash
# Create the webhook's serving certificate for the plain manifests (manifests/imprimatur.yaml), which
# carry no certificate material: a private CA and a serving certificate for the webhook Service are
# generated with openssl, stored in the Secret <name>-tls (ca.crt, tls.crt, tls.key) that the controller
# mounts, and the CA is patched into the caBundle of every webhook of the ValidatingWebhookConfiguration
# <name>. The Helm chart does the same by itself (tls.source: helm) or through cert-manager.
#
# Usage:
#   hack/gen-webhook-certs.sh [--namespace imprimatur-system] [--name imprimatur] [--days 3650] [--force]
#   hack/gen-webhook-certs.sh --out DIR ...   # only write ca.crt, tls.crt, tls.key to DIR (no cluster)
#
# An existing Secret is kept (only the caBundle is patched from its ca.crt) unless --force is given:
# the controller reloads the files when the Secret changes, but replacing the CA under running pods
# briefly fails admissions closed.
#
# Needs: openssl (1.1.1 or 3.x), and kubectl with a context pointing at the cluster (not with --out).
set -euo pipefail

namespace=imprimatur-system
name=imprimatur
days=3650
force=false
out=""

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    -n|--namespace) namespace="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    --force) force=true; shift ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

dns_label='^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
[[ "$namespace" =~ $dns_label ]] || { echo "invalid namespace: $namespace" >&2; exit 2; }
[[ "$name" =~ $dns_label ]] || { echo "invalid name: $name" >&2; exit 2; }
[[ "$days" =~ ^[1-9][0-9]{0,4}$ ]] || { echo "invalid --days: $days" >&2; exit 2; }

secret="${name}-tls"
service="${name}"

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
umask 077

generate() {
  local dir="$1"
  cat >"$dir/ca.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = ${name}-webhook-ca
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  cat >"$dir/leaf.cnf" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:${service}, DNS:${service}.${namespace}, DNS:${service}.${namespace}.svc, DNS:${service}.${namespace}.svc.cluster.local
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
EOF
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key"
  openssl req -x509 -new -sha256 -key "$dir/ca.key" -days "$days" -config "$dir/ca.cnf" -out "$dir/ca.crt"
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/tls.key.sec1"
  # PKCS#8, the form every TLS stack reads.
  openssl pkcs8 -topk8 -nocrypt -in "$dir/tls.key.sec1" -out "$dir/tls.key"
  openssl req -new -sha256 -key "$dir/tls.key" -subj "/CN=${service}.${namespace}.svc" -out "$dir/tls.csr"
  openssl x509 -req -sha256 -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -extfile "$dir/leaf.cnf" -out "$dir/tls.crt"
  openssl verify -CAfile "$dir/ca.crt" "$dir/tls.crt" >/dev/null
  # The CA key is not kept: the next rotation makes a new CA.
  rm -f "$dir/ca.key" "$dir/tls.key.sec1" "$dir/tls.csr"
}

if [ -n "$out" ]; then
  mkdir -p "$out"
  generate "$workdir"
  cp "$workdir/ca.crt" "$workdir/tls.crt" "$workdir/tls.key" "$out/"
  echo "wrote $out/ca.crt $out/tls.crt $out/tls.key"
  exit 0
fi

command -v kubectl >/dev/null || { echo "kubectl not found" >&2; exit 1; }

if [ "$force" = false ] && kubectl -n "$namespace" get secret "$secret" >/dev/null 2>&1; then
  echo "secret $namespace/$secret exists; reusing its CA (--force to replace it)"
  kubectl -n "$namespace" get secret "$secret" -o jsonpath='{.data.ca\.crt}' | base64 -d >"$workdir/ca.crt"
  [ -s "$workdir/ca.crt" ] || { echo "secret $namespace/$secret has no ca.crt" >&2; exit 1; }
else
  generate "$workdir"
  kubectl -n "$namespace" create secret generic "$secret" --type=kubernetes.io/tls \
    --from-file=ca.crt="$workdir/ca.crt" --from-file=tls.crt="$workdir/tls.crt" \
    --from-file=tls.key="$workdir/tls.key" --dry-run=client -o yaml |
    kubectl label --local -f - -o yaml app.kubernetes.io/name=imprimatur app.kubernetes.io/instance="$name" |
    kubectl apply -f -
fi

ca_bundle="$(base64 <"$workdir/ca.crt" | tr -d '\n')"
count="$(kubectl get validatingwebhookconfiguration "$name" -o jsonpath='{range .webhooks[*]}{.name}{"\n"}{end}' | grep -c .)"
[ "$count" -gt 0 ] || { echo "validatingwebhookconfiguration $name has no webhooks" >&2; exit 1; }
patch="["
for ((i = 0; i < count; i++)); do
  [ "$i" -gt 0 ] && patch+=","
  patch+="{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$ca_bundle\"}"
done
patch+="]"
kubectl patch validatingwebhookconfiguration "$name" --type=json -p "$patch"
echo "caBundle set on $count webhook(s) of validatingwebhookconfiguration/$name"

# --- pinning: the MutatingWebhookConfiguration (absent when the chart's pinning.mode is off)
if kubectl get mutatingwebhookconfiguration "$name" >/dev/null 2>&1; then
  count="$(kubectl get mutatingwebhookconfiguration "$name" -o jsonpath='{range .webhooks[*]}{.name}{"\n"}{end}' | grep -c .)"
  patch="["
  for ((i = 0; i < count; i++)); do
    [ "$i" -gt 0 ] && patch+=","
    patch+="{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$ca_bundle\"}"
  done
  patch+="]"
  [ "$count" -eq 0 ] || kubectl patch mutatingwebhookconfiguration "$name" --type=json -p "$patch"
  echo "caBundle set on $count webhook(s) of mutatingwebhookconfiguration/$name"
fi
