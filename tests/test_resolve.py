"""``imprimatur resolve`` against the real registry: tags pinned in the text, everything else as it was.

The pinned output is checked again with ``imprimatur check --require-digest`` (the same engine, refusing
any tag), so a resolved manifest is what the webhook admits by digest.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.cli import main
from tests.admission.harness import (
    TRUST_ROOT_NAME,
    TRUSTED_SUBJECT,
    WRONG_SUBJECT,
    cluster_policy,
    write_policies,
)
from tests.fixtures.registry import RegistryServer
from tests.kit.oci import push_signed_image
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, Identity, SigstoreKit

MANIFEST = """\
# the web tier; images are bumped by CI
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # keep this name
  namespace: shop
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers:
        - name: migrate
          image: "HOST/resolve/app:v1"     # quoted on purpose
      containers:
        - name: web
          image: HOST/resolve/app:v1
        - {name: side, image: 'HOST/resolve/app@DIGEST'}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: List
items:
  - apiVersion: batch/v1
    kind: CronJob
    metadata: {name: nightly}
    spec:
      schedule: "@daily"
      jobTemplate:
        spec:
          template:
            spec:
              containers: [{name: job, image: HOST/resolve/app:v1}]
              restartPolicy: Never
"""


@pytest.fixture(scope="module")
def world(
    registry: RegistryServer, sigstore_kit: SigstoreKit, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    host = registry.host
    tmp = tmp_path_factory.mktemp("resolve")

    def sign_as(subject: str, repo: str) -> Any:
        identity = Identity.email(subject, GITHUB_OAUTH_ISSUER)
        return lambda d: [sigstore_kit.sign_image(str(d), f"{host}/{repo}", identity=identity)]

    digest = push_signed_image(registry, "resolve/app", "v1", sign_as(TRUSTED_SUBJECT, "resolve/app"))
    push_signed_image(registry, "resolve/wrong", "v1", sign_as(WRONG_SUBJECT, "resolve/wrong"))
    registry.push_random_image("resolve/unsigned", "v1")
    (tmp / "root.json").write_bytes(sigstore_kit.trusted_root_json())
    (tmp / "registries.yaml").write_text(registry.registries_yaml())
    policy = write_policies(tmp / "policy.yaml", [cluster_policy("resolve", [f"{host}/resolve/**"])])
    flags = [
        "--registry-config",
        str(tmp / "registries.yaml"),
        "--trusted-root",
        f"{TRUST_ROOT_NAME}={tmp / 'root.json'}",
        "--policy",
        str(policy),
    ]
    return {"host": host, "digest": str(digest), "flags": flags}


def _manifest(world: dict[str, Any], text: str = MANIFEST) -> str:
    return text.replace("HOST", world["host"]).replace("DIGEST", world["digest"])


def _run(world: dict[str, Any], *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main([args[0], *world["flags"], *args[1:]], out=out)
    return code, out.getvalue()


def test_resolve_pins_every_tag_in_place_and_keeps_the_rest_of_the_text(
    world: dict[str, Any], tmp_path: Path
) -> None:
    source = _manifest(world)
    path = tmp_path / "deploy.yaml"
    path.write_text(source)

    code, printed = _run(world, "resolve", "-f", str(path))
    assert code == 0
    pinned_ref = f"{world['host']}/resolve/app:v1@{world['digest']}"
    # exactly the image scalars changed, each keeping its quoting; comments and layout are untouched
    expected = (
        source.replace(f'"{world["host"]}/resolve/app:v1"', f'"{pinned_ref}"')
        .replace(f"{world['host']}/resolve/app:v1\n", f"{pinned_ref}\n")
        .replace(f"{world['host']}/resolve/app:v1}}", f"{pinned_ref}}}")
    )
    assert printed == expected
    assert "# quoted on purpose" in printed and "name: web   # keep this name" in printed
    assert path.read_text() == source  # printing writes nothing

    assert _run(world, "resolve", "-f", str(path), "--in-place") == (0, "")
    assert path.read_text() == expected
    # idempotent, and the result is admitted by digest only
    assert _run(world, "resolve", "-f", str(path))[1] == expected
    code, _ = _run(world, "check", "-f", str(path), "--require-digest")
    assert code == 0
    docs = [d for d in yaml.safe_load_all(expected) if d]
    assert docs[0]["spec"]["template"]["spec"]["containers"][1]["image"].endswith(world["digest"])


@pytest.mark.parametrize(
    ("repo", "reason"), [("resolve/wrong", "IdentityMismatch"), ("resolve/unsigned", "SignatureNotFound")]
)
def test_resolve_refuses_and_writes_nothing_when_an_image_does_not_verify(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], repo: str, reason: str
) -> None:
    source = (
        _manifest(world)
        + f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers: [{{name: a, image: {world['host']}/{repo}:v1}}]\n"
    )
    path = tmp_path / "deploy.yaml"
    path.write_text(source)
    code, printed = _run(world, "resolve", "-f", str(path), "--in-place")
    assert code == 1 and printed == ""
    assert path.read_text() == source
    assert f"{reason}: {world['host']}/{repo}:v1: " in capsys.readouterr().err


def test_resolve_usage_errors(world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: 3}]}\n"
    )
    assert _run(world, "resolve", "-f", str(bad))[0] == 2
    bad.write_text("a: [")
    assert _run(world, "resolve", "-f", str(bad))[0] == 2
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert _run(world, "resolve", "-f", "-", "--in-place")[0] == 2
