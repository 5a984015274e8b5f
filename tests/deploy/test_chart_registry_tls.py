"""The chart's ``registryTLS``: registry CA bundles and client certificates from Secrets or ConfigMaps,
mounted read-only where registries.yaml (``configs.<host>.tls``) can name them, with no RBAC.

Rendered by the real helm with a values file; every object validated against the Kubernetes 1.30
schemas (strict); bad values refused by values.schema.json or, for what a schema cannot say (a name or
path given twice), by the template.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from controller.registry.config import RegistryConfig
from tests.deploy.helmrun import CHART, KUBE_VERSION, NAMESPACE, RELEASE, Helm, HelmError, Obj, find

MOUNT_ROOT = PurePosixPath("/etc/imprimatur/registry-tls")
RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
CORP_CA = {"name": "corp-ca", "secretName": "corp-registry-ca"}


def _render(helm: Helm, tmp_path: Path, values: dict[str, Any]) -> list[Obj]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values), encoding="utf-8")
    text = helm.run(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION,
        "--values", str(values_file),
    )  # fmt: skip
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _pod(objs: list[Obj]) -> dict[str, Any]:
    return dict(find(objs, "Deployment")["spec"]["template"]["spec"])


def _volumes(objs: list[Obj]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _pod(objs)["volumes"]}


def _mounts(objs: list[Obj]) -> dict[str, dict[str, Any]]:
    (container,) = _pod(objs)["containers"]
    return {m["name"]: m for m in container["volumeMounts"]}


def _validate_all(objs: list[Obj]) -> None:
    for obj in objs:
        if obj["apiVersion"] != "cert-manager.io/v1":
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def _mounted_files(objs: list[Obj], contents: dict[str, list[str]]) -> set[PurePosixPath]:
    """Every file the container would see under MOUNT_ROOT, given each source's keys (``contents``)."""
    volumes = _volumes(objs)
    files: set[PurePosixPath] = set()
    for name, mount in _mounts(objs).items():
        if not name.startswith("registry-tls-"):
            continue
        volume = volumes[name]
        source = volume.get("secret") or volume["configMap"]
        source_name = source.get("secretName") or source["name"]
        items = source.get("items") or [{"key": k, "path": k} for k in contents[source_name]]
        files |= {PurePosixPath(mount["mountPath"]) / item["path"] for item in items}
    return files


def test_nothing_is_mounted_by_default(default_render: list[Obj]) -> None:
    assert not any(name.startswith("registry-tls") for name in _volumes(default_render))
    assert not any(str(m["mountPath"]).startswith(str(MOUNT_ROOT)) for m in _mounts(default_render).values())


def test_a_secret_is_mounted_read_only_with_the_tls_secrets_mode(helm: Helm, tmp_path: Path) -> None:
    objs = _render(helm, tmp_path, {"registryTLS": [CORP_CA]})
    _validate_all(objs)
    volumes = _volumes(objs)
    assert volumes["registry-tls-corp-ca"] == {
        "name": "registry-tls-corp-ca",
        "secret": {"secretName": "corp-registry-ca", "defaultMode": 0o440},
    }
    assert volumes["registry-tls-corp-ca"]["secret"]["defaultMode"] == volumes["tls"]["secret"]["defaultMode"]
    assert _mounts(objs)["registry-tls-corp-ca"] == {
        "name": "registry-tls-corp-ca",
        "mountPath": "/etc/imprimatur/registry-tls/corp-ca",
        "readOnly": True,
    }
    # 0440 is readable by the controller only through its group: the pod's fsGroup is its gid.
    security = _pod(objs)["securityContext"]
    assert security["fsGroup"] == security["runAsGroup"] == 65532


def test_a_config_map_with_items_is_projected_world_readable(helm: Helm, tmp_path: Path) -> None:
    entry = {
        "name": "bundle",
        "configMapName": "trust-bundle",
        "items": [{"key": "bundle.pem", "path": "ca.crt"}],
    }
    objs = _render(helm, tmp_path, {"registryTLS": [CORP_CA, entry]})
    _validate_all(objs)
    assert _volumes(objs)["registry-tls-bundle"]["configMap"] == {
        "name": "trust-bundle",
        "defaultMode": 0o444,
        "items": [{"key": "bundle.pem", "path": "ca.crt"}],
    }
    mounts = _mounts(objs)
    assert mounts["registry-tls-bundle"]["mountPath"] == "/etc/imprimatur/registry-tls/bundle"
    assert all(mounts[f"registry-tls-{n}"]["readOnly"] is True for n in ("corp-ca", "bundle"))
    # the chart's own volumes are untouched
    assert {"tls", "tmp"} <= set(_volumes(objs))


def test_the_readme_example_mounts_every_file_its_registries_yaml_names(helm: Helm, tmp_path: Path) -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- registryTLS example:[^\n]*-->\n```yaml\n(?P<yaml>.*?)```", readme, re.S)
    assert found is not None, "the registryTLS example is missing from the chart README"
    values = yaml.safe_load(found["yaml"])
    objs = _render(helm, tmp_path, values)
    _validate_all(objs)
    named = {PurePosixPath(p) for p in RegistryConfig.from_yaml(values["registryConfig"]).files()}
    assert len(named) == 3
    mounted = _mounted_files(objs, {"corp-registry-ca": ["ca.crt"], "registry-client": []})
    assert named == mounted
    # the client key comes from a Secret (0440), the CA from a ConfigMap (0444)
    volumes = _volumes(objs)
    assert volumes["registry-tls-mtls"]["secret"]["defaultMode"] == 0o440
    assert volumes["registry-tls-corp-ca"]["configMap"]["defaultMode"] == 0o444


def test_no_rbac_is_granted_for_the_mounted_files(
    helm: Helm, tmp_path: Path, default_render: list[Obj]
) -> None:
    objs = _render(helm, tmp_path, {"registryTLS": [CORP_CA, {"name": "b", "configMapName": "cm"}]})

    def rbac(render: list[Obj]) -> list[Obj]:
        return sorted(
            (o for o in render if o["kind"] in RBAC_KINDS), key=lambda o: (o["kind"], o["metadata"]["name"])
        )

    assert rbac(objs) == rbac(default_render)
    assert sorted(o["kind"] for o in objs) == sorted(o["kind"] for o in default_render)
    # no rule anywhere names the mounted Secret or ConfigMap
    for role in rbac(objs):
        for rule in role.get("rules", []):
            assert not {"corp-registry-ca", "cm"} & set(rule.get("resourceNames", []))


def test_settings_and_other_volumes_are_unchanged(
    helm: Helm, tmp_path: Path, default_render: list[Obj]
) -> None:
    objs = _render(helm, tmp_path, {"registryTLS": [CORP_CA]})
    (container,) = _pod(objs)["containers"]
    (default_container,) = _pod(default_render)["containers"]
    assert container["env"] == default_container["env"]
    default_volumes = _volumes(default_render)
    assert {k: v for k, v in _volumes(objs).items() if k in default_volumes} == default_volumes


_LONG = "a" * 51


@pytest.mark.parametrize(
    "entries",
    [
        {"name": "x", "secretName": "s"},  # not a list
        [{"secretName": "s"}],  # no name
        [{"name": "Corp-CA", "secretName": "s"}],  # not a DNS label
        [{"name": "corp.ca", "secretName": "s"}],
        [{"name": "../etc", "secretName": "s"}],
        [{"name": _LONG, "secretName": "s"}],  # registry-tls-<name> would pass 63
        [{"name": ""}],
        [{"name": "x"}],  # neither source
        [{"name": "x", "secretName": "s", "configMapName": "c"}],  # both
        [{"name": "x", "secretName": ""}],
        [{"name": "x", "secretName": "Not_A_Name"}],
        [{"name": "x", "configMapName": "c/d"}],
        [{"name": "x", "secretName": "s", "defaultMode": 0o777}],  # modes are the chart's
        [{"name": "x", "secretName": "s", "optional": True}],  # fail closed: no optional sources
        [{"name": "x", "secretName": "s", "mountPath": "/etc/imprimatur/tls"}],
        [{"name": "x", "secretName": "s", "items": []}],
        [{"name": "x", "secretName": "s", "items": [{"key": "ca.crt"}]}],
        [{"name": "x", "secretName": "s", "items": [{"key": "ca.crt", "path": "../tls/tls.key"}]}],
        [{"name": "x", "secretName": "s", "items": [{"key": "ca.crt", "path": "sub/ca.crt"}]}],
        [{"name": "x", "secretName": "s", "items": [{"key": "ca.crt", "path": ".."}]}],
        [{"name": "x", "secretName": "s", "items": [{"key": "..", "path": "ca.crt"}]}],
        [{"name": "x", "secretName": "s", "items": [{"key": "a b", "path": "ca.crt"}]}],
        [{"name": "x", "secretName": "s", "items": [{"key": "k", "path": "p", "mode": 0o777}]}],
        [{"name": f"n{i}", "secretName": "s"} for i in range(17)],
    ],
    ids=lambda entries: yaml.safe_dump(entries, default_flow_style=True, width=10**6).strip()[:80],
)
def test_values_schema_refuses_a_bad_entry(helm: Helm, tmp_path: Path, entries: object) -> None:
    with pytest.raises(HelmError) as failed:
        _render(helm, tmp_path, {"registryTLS": entries})
    assert "values don't meet the specifications of the schema" in failed.value.stderr
    assert "registryTLS" in failed.value.stderr


def test_the_limits_themselves_are_accepted(helm: Helm, tmp_path: Path) -> None:
    items = [{"key": f"k{i}", "path": f"p{i}"} for i in range(16)]
    entries = [{"name": f"{'a' * 48}{i:02d}", "secretName": "s", "items": items} for i in range(16)]
    objs = _render(helm, tmp_path, {"registryTLS": entries})
    _validate_all(objs)
    assert sum(name.startswith("registry-tls-") for name in _volumes(objs)) == 16


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([CORP_CA, {"name": "corp-ca", "configMapName": "other"}], 'the name "corp-ca" is given twice'),
        (
            [
                {
                    "name": "x",
                    "secretName": "s",
                    "items": [{"key": "a", "path": "f"}, {"key": "b", "path": "f"}],
                }
            ],
            'the path "f" is given twice',
        ),
    ],
    ids=["name-twice", "path-twice"],
)
def test_the_template_refuses_what_the_schema_cannot_see(
    helm: Helm, tmp_path: Path, entries: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(HelmError) as failed:
        _render(helm, tmp_path, {"registryTLS": entries})
    assert message in failed.value.stderr
