"""The scripts under hack/ and the kind configuration.

hack/gen-webhook-certs.sh runs for real (real openssl). Its cluster half runs against a stand-in
``kubectl`` on PATH that records what it is asked to apply and patch, so the Secret and the caBundle
patch it would send are checked without a cluster.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.deploy.helmrun import HACK, ROOT

SCRIPT_TIMEOUT_SECONDS = 60
SHELL_SCRIPTS = sorted(HACK.glob("*.sh"))
# get-helm.py takes no arguments; the others are argparse commands.
PYTHON_CLI_SCRIPTS = sorted(p for p in HACK.glob("*.py") if p.name != "get-helm.py")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        check=False,
        timeout=SCRIPT_TIMEOUT_SECONDS,
        env=env,
        cwd=ROOT,
    )


def _load_certs(directory: Path) -> tuple[x509.Certificate, x509.Certificate, bytes]:
    ca = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
    return ca, cert, (directory / "tls.key").read_bytes()


def _check_serving_pair(ca: x509.Certificate, cert: x509.Certificate, key_pem: bytes, dns: str) -> None:
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert dns in cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    key = serialization.load_pem_private_key(key_pem, password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


# --- shell hygiene ------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_script_parses_and_is_executable(script: Path) -> None:
    assert _run("bash", "-n", str(script)).returncode == 0
    assert script.stat().st_mode & stat.S_IXUSR
    assert script.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text(encoding="utf-8")


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_is_clean(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is a test dependency: apt-get install shellcheck"
    result = _run(shellcheck, str(script))
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", PYTHON_CLI_SCRIPTS, ids=lambda p: p.name)
def test_python_script_has_help(script: Path) -> None:
    result = _run(sys.executable, str(script), "--help")
    assert result.returncode == 0, result.stderr


# --- gen-webhook-certs.sh -----------------------------------------------------------------------------


def test_gen_webhook_certs_writes_a_serving_pair(tmp_path: Path) -> None:
    result = _run(
        "bash",
        str(HACK / "gen-webhook-certs.sh"),
        "--namespace",
        "sec",
        "--name",
        "imp",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    ca, cert, key = _load_certs(tmp_path)
    _check_serving_pair(ca, cert, key, "imp.sec.svc")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert sans == ["imp", "imp.sec", "imp.sec.svc", "imp.sec.svc.cluster.local"]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert abs(lifetime - datetime.timedelta(days=3650)) < datetime.timedelta(days=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]  # no CA key kept
    assert (tmp_path / "tls.key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "args",
    [("--namespace", "Bad_NS"), ("--name", "a/b"), ("--days", "0"), ("--days", "x"), ("--bogus",)],
)
def test_gen_webhook_certs_refuses_bad_arguments(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = _run("bash", str(HACK / "gen-webhook-certs.sh"), *args, "--out", str(tmp_path))
    assert result.returncode == 2
    assert not (tmp_path / "tls.crt").exists()


_FAKE_KUBECTL = r'''#!/usr/bin/env python3
"""A stand-in kubectl: records apply/patch, answers get from files in $FAKE_KUBE."""
import base64, json, os, pathlib, sys
state = pathlib.Path(os.environ["FAKE_KUBE"])
args = sys.argv[1:]
with open(state / "calls.log", "a") as log:
    log.write(json.dumps(args) + "\n")
def opt(name):
    for a in args:
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return args[args.index(name) + 1] if name in args else None
if args[:2] == ["get", "secret"] or (len(args) > 3 and args[2:4] == ["get", "secret"]):
    secret = state / "secret.json"
    if not secret.exists():
        sys.exit(1)
    data = json.loads(secret.read_text())
    if "jsonpath={.data.ca\\.crt}" in args or opt("-o") == "jsonpath={.data.ca\\.crt}":
        sys.stdout.write(data["data"]["ca.crt"])
    sys.exit(0)
if "create" in args and "secret" in args:
    name = args[args.index("generic") + 1]
    data = {}
    for a in args:
        if a.startswith("--from-file="):
            key, path = a[len("--from-file="):].split("=", 1)
            data[key] = base64.b64encode(pathlib.Path(path).read_bytes()).decode()
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": opt("-n")},
           "type": opt("--type"), "data": data}
    print(json.dumps(obj))
    sys.exit(0)
if args[:1] == ["label"]:
    obj = json.loads(sys.stdin.read())
    for a in args:
        if "=" in a and not a.startswith("-"):
            k, v = a.split("=", 1)
            obj["metadata"].setdefault("labels", {})[k] = v
    print(json.dumps(obj))
    sys.exit(0)
if args[:1] == ["apply"]:
    (state / "applied.json").write_text(sys.stdin.read())
    sys.exit(0)
if args[:2] == ["get", "validatingwebhookconfiguration"]:
    print("pods.imprimatur.dev")
    print("workloads.imprimatur.dev")
    sys.exit(0)
if args[:2] == ["patch", "validatingwebhookconfiguration"]:
    (state / "patch.json").write_text(opt("-p"))
    sys.exit(0)
sys.exit(f"fake kubectl: unexpected {args}")
'''


@pytest.fixture
def fake_cluster(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(
        _FAKE_KUBECTL.replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1), encoding="utf-8"
    )
    kubectl.chmod(0o755)
    state = tmp_path / "cluster"
    state.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_KUBE": str(state)}
    return state, env


def _patched_bundles(state: Path) -> dict[str, str]:
    ops = json.loads((state / "patch.json").read_text(encoding="utf-8"))
    assert all(op["op"] == "add" for op in ops)
    return {op["path"]: op["value"] for op in ops}


def test_gen_webhook_certs_creates_the_secret_and_patches_every_ca_bundle(
    fake_cluster: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    state, env = fake_cluster
    result = _run("bash", str(HACK / "gen-webhook-certs.sh"), env=env)
    assert result.returncode == 0, result.stderr
    secret = json.loads((state / "applied.json").read_text(encoding="utf-8"))
    assert secret["metadata"] == {
        "name": "imprimatur-tls",
        "namespace": "imprimatur-system",
        "labels": {"app.kubernetes.io/name": "imprimatur", "app.kubernetes.io/instance": "imprimatur"},
    }
    assert secret["type"] == "kubernetes.io/tls"
    assert sorted(secret["data"]) == ["ca.crt", "tls.crt", "tls.key"]
    pems = tmp_path / "pems"
    pems.mkdir()
    for key, value in secret["data"].items():
        (pems / key).write_bytes(base64.b64decode(value))
    ca, cert, key_pem = _load_certs(pems)
    _check_serving_pair(ca, cert, key_pem, "imprimatur.imprimatur-system.svc")
    assert _patched_bundles(state) == {
        "/webhooks/0/clientConfig/caBundle": secret["data"]["ca.crt"],
        "/webhooks/1/clientConfig/caBundle": secret["data"]["ca.crt"],
    }


def test_gen_webhook_certs_keeps_an_existing_secret(fake_cluster: tuple[Path, dict[str, str]]) -> None:
    state, env = fake_cluster
    existing_ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nexisting\n").decode()
    (state / "secret.json").write_text(json.dumps({"data": {"ca.crt": existing_ca}}), encoding="utf-8")
    result = _run("bash", str(HACK / "gen-webhook-certs.sh"), env=env)
    assert result.returncode == 0, result.stderr
    assert not (state / "applied.json").exists()
    assert set(_patched_bundles(state).values()) == {existing_ca}


def test_gen_webhook_certs_force_replaces_an_existing_secret(
    fake_cluster: tuple[Path, dict[str, str]],
) -> None:
    state, env = fake_cluster
    existing_ca = base64.b64encode(b"old").decode()
    (state / "secret.json").write_text(json.dumps({"data": {"ca.crt": existing_ca}}), encoding="utf-8")
    result = _run("bash", str(HACK / "gen-webhook-certs.sh"), "--force", env=env)
    assert result.returncode == 0, result.stderr
    applied = json.loads((state / "applied.json").read_text(encoding="utf-8"))
    assert set(_patched_bundles(state).values()) == {applied["data"]["ca.crt"]} != {existing_ca}


# --- get-helm.py --------------------------------------------------------------------------------------


def test_get_helm_refuses_a_binary_that_is_not_helm(tmp_path: Path) -> None:
    fake = tmp_path / "helm"
    fake.write_text("#!/bin/sh\necho not-helm\n", encoding="utf-8")
    fake.chmod(0o755)
    result = _run(sys.executable, str(HACK / "get-helm.py"), env={**os.environ, "IMPRIMATUR_HELM": str(fake)})
    assert result.returncode == 1
    assert result.stdout == ""


def test_get_helm_extracts_a_pinned_helm_into_the_cache(helm: object, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "IMPRIMATUR_HELM"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    result = _run(sys.executable, str(HACK / "get-helm.py"), env=env)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.is_relative_to(tmp_path)
    assert _run(str(path), "version", "--short").stdout.startswith("v3.17.")
    assert "warning" not in result.stderr  # the package version has a pinned digest


# --- kind ---------------------------------------------------------------------------------------------


def test_kind_config_has_a_control_plane_a_worker_and_the_registry_mirror_path() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text(encoding="utf-8"))
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker"]
    (patch,) = config["containerdConfigPatches"]
    assert '[plugins."io.containerd.grpc.v1.cri".registry]' in patch
    assert 'config_path = "/etc/containerd/certs.d"' in patch


def test_kind_up_wires_the_documented_local_registry() -> None:
    script = (HACK / "kind-up.sh").read_text(encoding="utf-8")
    assert 'reg_name="kind-registry"' in script
    assert '[host."http://%s:5000"]' in script
    assert "/etc/containerd/certs.d/localhost:${reg_port}" in script
    assert "docker network connect kind" in script
    assert "local-registry-hosting" in script
    assert '--config "$root/kind-config.yaml"' in script
    assert 'image.digest="$digest"' in script
