"""The Helm chart, rendered by the real helm: lint, Kubernetes schemas, and the security properties.

Every rendered object is validated offline against the Kubernetes 1.30 OpenAPI schemas (strict: an
unknown field, such as a container-only securityContext key at pod level, is an error) with
kubernetes-validate. cert-manager objects have no schema there and are checked field by field.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.deploy import crdcheck
from tests.deploy.helmrun import CHART, KUBE_VERSION, NAMESPACE, RELEASE, Helm, HelmError, Obj, find, kinds

SERVICE_DNS = f"{RELEASE}.{NAMESPACE}.svc"
DIGEST = "sha256:" + "ab" * 32
WORKLOAD_RESOURCES = {
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("", "replicationcontrollers"),
}


def _validate_all(objs: list[Obj]) -> None:
    for obj in objs:
        if obj["apiVersion"] == "cert-manager.io/v1":
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def _container(objs: list[Obj]) -> dict[str, Any]:
    (container,) = find(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _env(objs: list[Obj]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(objs)["env"]}


def _webhooks(objs: list[Obj]) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in find(objs, "ValidatingWebhookConfiguration")["webhooks"]}


# --- lint and render ----------------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_helm_lint_passes(helm: Helm, strict: bool) -> None:
    args = ["lint", str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    helm.run(*args, *(["--strict"] if strict else []))


def test_default_render_has_one_object_per_template(default_render: list[Obj]) -> None:
    assert sorted(kinds(default_render)) == sorted(
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "MutatingWebhookConfiguration",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
            "ValidatingWebhookConfiguration",
        ]
    )


@pytest.mark.parametrize(
    ("values", "api_versions"),
    [((), ()), (("createNamespace=true", "registryConfig=x: y"), ("cert-manager.io/v1",))],
    ids=["default", "everything"],
)
def test_each_template_renders_at_most_one_resource(
    helm: Helm, values: tuple[str, ...], api_versions: tuple[str, ...]
) -> None:
    text = helm.template_text(*values, api_versions=api_versions)
    sources = [line for line in text.splitlines() if line.startswith("# Source: ")]
    assert len(sources) == len(set(sources))
    assert len(sources) == len([d for d in yaml.safe_load_all(text) if d])


def test_default_render_validates_against_kubernetes_schemas(default_render: list[Obj]) -> None:
    _validate_all(default_render)


def test_crds_render_with_include_crds(helm: Helm) -> None:
    objs = helm.template(include_crds=True)
    crds = {o["spec"]["names"]["kind"]: o for o in objs if o["kind"] == "CustomResourceDefinition"}
    assert crds == crdcheck.load_crds()


@pytest.mark.parametrize(
    "values",
    [
        ("registryConfig=mirrors: {}", "dockerConfigSecret=regcred"),
        ("createNamespace=true", "tls.source=external"),
        ("pdb.enabled=false", "priorityClassName=system-cluster-critical", "nodeSelector.role=infra"),
        ("webhook.failurePolicy=Ignore", "webhook.timeoutSeconds=30", "defaultDecision=allow"),
    ],
    ids=["registry-config", "plain-manifests", "scheduling", "break-glass"],
)
def test_every_option_renders_valid_objects(helm: Helm, values: tuple[str, ...]) -> None:
    _validate_all(helm.template(*values))


# --- values.schema.json -------------------------------------------------------------------------------


def test_values_yaml_satisfies_values_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8")), schema)
    assert schema["additionalProperties"] is False


def test_values_schema_covers_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in node:
            for key, child in value.items():
                assert key in node["properties"], f"{path}.{key} is not in values.schema.json"
                walk(child, node["properties"][key], f"{path}.{key}")

    walk(values, schema, "")


@pytest.mark.parametrize(
    "bad",
    [
        "replicas=abc",
        "replicas=0",
        "image.digest=sha256:1234",
        "image.digest=latest",
        "webhook.timeoutSeconds=31",
        "webhook.failurePolicy=Maybe",
        "defaultDecision=maybe",
        "requireDigest=sometimes",
        "certManager.enabled=yes",
        "tls.source=self",
        "logLevel=trace",
        "notAValue=1",
        "image.extra=1",
        "webhook.excludeNamespaces[0]=Not_A_Namespace",
    ],
)
def test_values_schema_rejects_a_bad_value(helm: Helm, bad: str) -> None:
    with pytest.raises(HelmError) as failed:
        helm.template(bad)
    assert "schema" in failed.value.stderr


def test_digest_pins_the_image(helm: Helm, default_render: list[Obj]) -> None:
    assert _container(default_render)["image"] == "ghcr.io/imprimatur/imprimatur:0.1.0"
    pinned = helm.template(f"image.digest={DIGEST}")
    assert _container(pinned)["image"] == f"ghcr.io/imprimatur/imprimatur:0.1.0@{DIGEST}"


def _notes(helm: Helm, tmp_path: Path, *values: str) -> str:
    """Render NOTES.txt offline: helm prints it only on install, which needs a cluster, so a copy of
    the chart wraps it in a define and renders it into a ConfigMap."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text(encoding="utf-8")
    (chart / "templates" / "_notes_probe.tpl").write_text(
        '{{- define "probe.notes" -}}' + notes + "{{- end }}", encoding="utf-8"
    )
    (chart / "templates" / "notes-probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ include "probe.notes" . | toJson }}\n',
        encoding="utf-8",
    )
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for value in values:
        args += ["--set", value]
    docs = [d for d in yaml.safe_load_all(helm.run(*args)) if d]
    return str(find(docs, "ConfigMap", "notes")["data"]["notes"])


def test_notes_warn_while_the_image_is_not_pinned(helm: Helm, tmp_path: Path) -> None:
    unpinned = _notes(helm, tmp_path / "a")
    assert "WARNING: image.digest is empty" in unpinned
    assert "DENIED" in unpinned
    pinned = _notes(helm, tmp_path / "b", f"image.digest={DIGEST}", "tls.source=external")
    assert "WARNING" not in pinned
    assert "hack/gen-webhook-certs.sh" in pinned


# --- the pod ------------------------------------------------------------------------------------------


def test_pod_security_context_is_at_pod_level(default_render: list[Obj]) -> None:
    pod = find(default_render, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_container_security_context_is_at_container_level(default_render: list[Obj]) -> None:
    assert _container(default_render)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


_RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security Standards "restricted" profile, checked on a pod spec."""
    found = [key for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    pod_sc = pod.get("securityContext", {})
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation not false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            found.append(f"{name}: capabilities not dropped")
        if set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities added")
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))):
            found.append(f"{name}: runAsNonRoot not set")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            found.append(f"{name}: runs as root")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccomp {seccomp}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            found.append(f"{name}: hostPort")
    for v in pod.get("volumes", []):
        kind = set(v) - {"name"}
        if not kind <= _RESTRICTED_VOLUME_TYPES:
            found.append(f"volume {v['name']}: {kind}")
    return found


@pytest.mark.parametrize(
    "values",
    [(), ("registryConfig=mirrors: {}", "dockerConfigSecret=regcred")],
    ids=["default", "all-volumes"],
)
def test_pod_meets_the_restricted_pod_security_standard(helm: Helm, values: tuple[str, ...]) -> None:
    pod = find(helm.template(*values), "Deployment")["spec"]["template"]["spec"]
    assert _restricted_violations(pod) == []


def test_restricted_check_catches_an_insecure_pod(default_render: list[Obj]) -> None:
    pod = json.loads(json.dumps(find(default_render, "Deployment")["spec"]["template"]["spec"]))
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(_restricted_violations(pod)) == 2


def test_deployment_shape(default_render: list[Obj]) -> None:
    deployment = find(default_render, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == find(default_render, "ServiceAccount")["metadata"]["name"]
    container = _container(default_render)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"webhook": 8443, "health": 8080, "metrics": 9090}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


def test_tls_secret_and_tmp_are_mounted(default_render: list[Obj]) -> None:
    pod = find(default_render, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in _container(default_render)["volumeMounts"]}
    assert volumes["tls"]["secret"]["secretName"] == f"{RELEASE}-tls"
    assert mounts["tls"] == {"name": "tls", "mountPath": "/etc/imprimatur/tls", "readOnly": True}
    assert "emptyDir" in volumes["tmp"]
    assert mounts["tmp"]["mountPath"] == "/tmp"
    assert set(volumes) == {"tls", "tmp"}


def test_settings_reach_the_controller_as_environment(default_render: list[Obj], helm: Helm) -> None:
    env = _env(default_render)
    assert env["IMPRIMATUR_STANDALONE"] == "true"
    assert env["IMPRIMATUR_DEFAULT_DECISION"] == "deny"
    assert env["IMPRIMATUR_REQUIRE_DIGEST"] == "false"
    assert env["IMPRIMATUR_WARN_ON_TAG"] == "true"
    assert env["IMPRIMATUR_TLS_DIR"] == "/etc/imprimatur/tls"
    assert env["IMPRIMATUR_WEBHOOK_PORT"] == "8443"
    assert env["IMPRIMATUR_LIVENESS_ENDPOINT"] == "http://0.0.0.0:8080/healthz"
    assert env["IMPRIMATUR_METRICS_PORT"] == "9090"
    assert env["IMPRIMATUR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert "IMPRIMATUR_REGISTRY_CONFIG" not in env
    assert "IMPRIMATUR_DOCKER_CONFIG" not in env
    changed = _env(helm.template("requireDigest=true", "warnOnTag=false", "defaultDecision=allow"))
    assert (changed["IMPRIMATUR_REQUIRE_DIGEST"], changed["IMPRIMATUR_WARN_ON_TAG"]) == ("true", "false")
    assert changed["IMPRIMATUR_DEFAULT_DECISION"] == "allow"


def test_registry_config_and_docker_config_are_mounted(helm: Helm) -> None:
    registries = "registries:\n  - host: ghcr.io\n    mirrors: [mirror.acme.com]\n"
    objs = helm.template("dockerConfigSecret=regcred", set_strings=(f"registryConfig={registries}",))
    config_map = find(objs, "ConfigMap", f"{RELEASE}-registries")
    assert config_map["data"]["registries.yaml"].strip() == registries.strip()
    env = _env(objs)
    assert env["IMPRIMATUR_REGISTRY_CONFIG"] == "/etc/imprimatur/registries/registries.yaml"
    assert env["IMPRIMATUR_DOCKER_CONFIG"] == "/etc/imprimatur/docker/config.json"
    pod = find(objs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["registries"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert volumes["docker-config"]["secret"] == {
        "secretName": "regcred",
        "defaultMode": 0o440,
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    annotations = find(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/registry-config" in annotations
    other = helm.template(set_strings=("registryConfig=registries: []",))
    other_annotations = find(other, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert other_annotations["checksum/registry-config"] != annotations["checksum/registry-config"]


def test_service_routes_443_to_the_webhook_port(default_render: list[Obj]) -> None:
    service = find(default_render, "Service")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"webhook": (443, "webhook"), "metrics": (9090, "metrics")}
    pod_labels = find(default_render, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_pdb_keeps_one_replica(default_render: list[Obj]) -> None:
    pdb = find(default_render, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = find(default_render, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


# --- RBAC ---------------------------------------------------------------------------------------------


def _rules(roles: list[Obj]) -> dict[tuple[str, str], set[str]]:
    """What the given roles grant, by (group, resource)."""
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in [rule for role in roles for rule in role["rules"]]:
        assert "resourceNames" not in rule or rule["resourceNames"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def _controller_role(objs: list[Obj]) -> Obj:
    roles = [
        o for o in objs if o["kind"] == "ClusterRole" and "aggregate" not in str(o["metadata"].get("labels"))
    ]
    assert len(roles) == 1
    return roles[0]


def test_cluster_role_is_least_privilege(default_render: list[Obj]) -> None:
    plurals = sorted(crd["spec"]["names"]["plural"] for crd in crdcheck.load_crds().values())
    expected: dict[tuple[str, str], set[str]] = {}
    for plural in plurals:
        expected[("imprimatur.dev", plural)] = {"get", "list", "watch"}
        expected[("imprimatur.dev", f"{plural}/status")] = {"patch"}
    expected[("apiextensions.k8s.io", "customresourcedefinitions")] = {"get", "list", "watch"}
    expected[("", "secrets")] = {"get"}  # pull secrets, in any namespace, by name
    expected[("", "serviceaccounts")] = {"get"}
    expected[("", "namespaces")] = {"get", "list", "watch"}  # their labels, for namespaceSelector
    expected[("", "events")] = {"create"}
    # background re-verification (issue 8): running Pods and workload templates, read page by page
    expected[("", "pods")] = {"list"}
    for group, plurals_of_group in (
        ("apps", ("daemonsets", "deployments", "replicasets", "statefulsets")),
        ("batch", ("cronjobs", "jobs")),
    ):
        for workload in plurals_of_group:
            expected[(group, workload)] = {"list"}
    # ... and its reports, written by server-side apply (create/patch) and read back (get/list/update)
    for group, reports in (
        ("wgpolicyk8s.io", ("policyreports", "clusterpolicyreports")),
        ("openreports.io", ("reports", "clusterreports")),
    ):
        for report in reports:
            expected[(group, report)] = {"create", "get", "list", "patch", "update"}
    assert _rules([_controller_role(default_render)]) == expected


def test_trust_root_data_is_read_only_in_the_release_namespace(default_render: list[Obj]) -> None:
    role, binding = find(default_render, "Role"), find(default_render, "RoleBinding")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get"]}]
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": find(default_render, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
            "namespace": NAMESPACE,
        }
    ]
    # and the controller's ClusterRole grants no ConfigMap access at all
    assert not any("configmaps" in rule["resources"] for rule in _controller_role(default_render)["rules"])


def test_namespace_admins_manage_image_policies_only(default_render: list[Obj]) -> None:
    aggregated = {
        label: role
        for role in default_render
        if role["kind"] == "ClusterRole"
        for label, value in (role["metadata"].get("labels") or {}).items()
        if label.startswith("rbac.authorization.k8s.io/aggregate-to-") and value == "true"
    }
    assert set(aggregated) == {
        "rbac.authorization.k8s.io/aggregate-to-admin",
        "rbac.authorization.k8s.io/aggregate-to-edit",
        "rbac.authorization.k8s.io/aggregate-to-view",
    }
    for label, role in aggregated.items():
        granted = _rules([role])
        # never the cluster-wide kinds: those decide for every namespace
        allowed = {"imagepolicies", "imagepolicies/status"}
        if label.endswith("-view"):  # issue 8: viewers may read exceptions; nobody is given to write them
            allowed |= {"imagepolicyexceptions", "imagepolicyexceptions/status"}
        assert {resource for _, resource in granted} <= allowed
        if label.endswith("-view"):
            assert set().union(*granted.values()) == {"get", "list", "watch"}
        else:
            assert {"create", "update", "patch", "delete"} <= granted[("imprimatur.dev", "imagepolicies")]


def test_no_wildcards_anywhere_in_rbac(default_render: list[Obj]) -> None:
    for role in default_render:
        if role["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field]


def test_binding_grants_the_role_to_the_controller(default_render: list[Obj]) -> None:
    binding = find(default_render, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == _controller_role(default_render)["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": find(default_render, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
            "namespace": NAMESPACE,
        }
    ]


# --- the webhook --------------------------------------------------------------------------------------


def test_every_webhook_fails_closed_without_side_effects(default_render: list[Obj]) -> None:
    webhooks = _webhooks(default_render)
    assert set(webhooks) == {"pods.imprimatur.dev", "workloads.imprimatur.dev", "policies.imprimatur.dev"}
    for webhook in webhooks.values():
        assert webhook["failurePolicy"] == "Fail"
        assert webhook["sideEffects"] == "None"
        assert webhook["timeoutSeconds"] == 10
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["matchPolicy"] == "Equivalent"


@pytest.mark.parametrize(("timeout", "deadline"), [(10, "9"), (5, "4"), (30, "29"), (1, "0.5")])
def test_timeout_is_a_value_and_the_controller_decides_before_it(
    helm: Helm, timeout: int, deadline: str
) -> None:
    objs = helm.template(f"webhook.timeoutSeconds={timeout}")
    for webhook in _webhooks(objs).values():
        assert webhook["timeoutSeconds"] == timeout
    assert _env(objs)["IMPRIMATUR_DECISION_TIMEOUT_SECONDS"] == deadline


@pytest.mark.parametrize("namespace", [NAMESPACE, "security"])
def test_namespace_selector_excludes_the_release_namespace_system_and_opt_outs(
    helm: Helm, namespace: str
) -> None:
    for name, webhook in _webhooks(helm.template(namespace=namespace)).items():
        if name == "policies.imprimatur.dev":
            assert "namespaceSelector" not in webhook  # an invalid policy is refused in every namespace
            continue
        expressions = webhook["namespaceSelector"]["matchExpressions"]
        assert {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": [namespace, "kube-system"],
        } in expressions
        assert {"key": "imprimatur.dev/exclude", "operator": "NotIn", "values": ["true"]} in expressions
        assert len(expressions) == 2
        assert "objectSelector" not in webhook


def test_webhooks_call_the_kopf_handler_paths_on_the_service(default_render: list[Obj]) -> None:
    service = find(default_render, "Service")
    paths = {name: w["clientConfig"]["service"] for name, w in _webhooks(default_render).items()}
    for name, path in [
        ("pods.imprimatur.dev", "/validate-pods"),
        ("workloads.imprimatur.dev", "/validate-workloads"),
        ("policies.imprimatur.dev", "/validate-policies"),
    ]:
        assert paths[name] == {
            "name": service["metadata"]["name"],
            "namespace": NAMESPACE,
            "path": path,
            "port": 443,
        }


def test_pod_webhook_covers_creation_image_updates_and_ephemeral_containers(
    default_render: list[Obj],
) -> None:
    rules = _webhooks(default_render)["pods.imprimatur.dev"]["rules"]
    covered = {
        (r["apiGroups"][0], res, op) for r in rules for res in r["resources"] for op in r["operations"]
    }
    assert covered == {
        ("", "pods", "CREATE"),
        ("", "pods", "UPDATE"),
        ("", "pods/ephemeralcontainers", "UPDATE"),
    }


def test_workload_webhook_covers_every_pod_template_owner(default_render: list[Obj]) -> None:
    rules = _webhooks(default_render)["workloads.imprimatur.dev"]["rules"]
    covered = set()
    for rule in rules:
        assert sorted(rule["operations"]) == ["CREATE", "UPDATE"]
        assert rule["apiVersions"] == ["v1"]
        covered |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    assert covered == WORKLOAD_RESOURCES


# --- certificates -------------------------------------------------------------------------------------


def _pem(b64: str) -> bytes:
    return base64.b64decode(b64)


def test_chart_generated_certificate_is_trusted_by_the_ca_bundle(default_render: list[Obj]) -> None:
    secret = find(default_render, "Secret", f"{RELEASE}-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ca = x509.load_pem_x509_certificate(_pem(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(_pem(secret["data"]["tls.crt"]))
    key = serialization.load_pem_private_key(_pem(secret["data"]["tls.key"]), password=None)
    for webhook in _webhooks(default_render).values():
        assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert SERVICE_DNS in sans.get_values_for_type(x509.DNSName)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def test_each_render_generates_its_own_ca(helm: Helm, default_render: list[Obj]) -> None:
    again = find(helm.template(), "Secret", f"{RELEASE}-tls")
    assert again["data"]["ca.crt"] != find(default_render, "Secret", f"{RELEASE}-tls")["data"]["ca.crt"]


@pytest.mark.parametrize(
    ("values", "api_versions"),
    [((), ("cert-manager.io/v1",)), (("certManager.enabled=true",), ())],
    ids=["auto-detected", "forced"],
)
def test_cert_manager_mode(helm: Helm, values: tuple[str, ...], api_versions: tuple[str, ...]) -> None:
    objs = helm.template(*values, api_versions=api_versions)
    _validate_all(objs)
    assert "Secret" not in kinds(objs)
    vwc = find(objs, "ValidatingWebhookConfiguration")
    assert (
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{RELEASE}-serving"
    )
    for webhook in vwc["webhooks"]:
        assert "caBundle" not in webhook["clientConfig"]
    serving = find(objs, "Certificate", f"{RELEASE}-serving")
    ca = find(objs, "Certificate", f"{RELEASE}-ca")
    selfsigned = find(objs, "Issuer", f"{RELEASE}-selfsigned")
    ca_issuer = find(objs, "Issuer", f"{RELEASE}-ca")
    assert selfsigned["spec"] == {"selfSigned": {}}
    assert ca["spec"]["isCA"] is True
    assert ca["spec"]["issuerRef"]["name"] == selfsigned["metadata"]["name"]
    assert ca_issuer["spec"]["ca"]["secretName"] == ca["spec"]["secretName"]
    assert serving["spec"]["issuerRef"]["name"] == ca_issuer["metadata"]["name"]
    assert SERVICE_DNS in serving["spec"]["dnsNames"]
    assert "server auth" in serving["spec"]["usages"]
    pod = find(objs, "Deployment")["spec"]["template"]["spec"]
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == serving["spec"]["secretName"]
    for obj in objs:
        if obj["apiVersion"] == "cert-manager.io/v1":
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_cert_manager_can_be_turned_off_when_present(helm: Helm) -> None:
    objs = helm.template("certManager.enabled=false", api_versions=("cert-manager.io/v1",))
    assert "Certificate" not in kinds(objs)
    assert "Secret" in kinds(objs)


def test_external_certificates(helm: Helm) -> None:
    objs = helm.template("tls.source=external")
    assert "Secret" not in kinds(objs)
    assert "Certificate" not in kinds(objs)
    for webhook in _webhooks(objs).values():
        assert "caBundle" not in webhook["clientConfig"]
    bundle = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    for webhook in _webhooks(helm.template("tls.source=external", f"tls.caBundle={bundle}")).values():
        assert webhook["clientConfig"]["caBundle"] == bundle


def test_policy_webhook_reviews_our_kinds_but_not_their_status(default_render: list[Obj]) -> None:
    webhook = _webhooks(default_render)["policies.imprimatur.dev"]
    plurals = sorted(crd["spec"]["names"]["plural"] for crd in crdcheck.load_crds().values())
    covered = sorted(r for rule in webhook["rules"] for r in rule["resources"])
    assert covered == plurals  # every CRD, and no /status (the controller writes that)
    for rule in webhook["rules"]:
        assert rule["apiGroups"] == ["imprimatur.dev"]
        assert rule["operations"] == ["CREATE", "UPDATE"]  # deleting an invalid object is always fine
    assert webhook["failurePolicy"] == "Fail"
