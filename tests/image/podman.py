"""podman as these machines run it, the image build, and the chart's Deployment as ``podman run`` flags.

* :func:`build_image` runs ``hack/build-image.sh`` (the base stand-in, cached; the project's Dockerfile
  unchanged but for ``PYTHON_IMAGE``) and measures it.
* :func:`pod_arguments` reads the Deployment that ``helm template`` renders and turns what a kubelet
  would apply into flags: the pod's and the container's securityContext, resource limits, env (the
  downward-API fields resolved), and every volume mount (Secret and ConfigMap volumes as files with the
  chart's modes and fsGroup, emptyDir as a tmpfs of its sizeLimit). Anything it cannot translate is an
  error, never dropped, so a chart change that the test does not honour fails here.

Everything a pod would have that a container on the host network must do differently is added by the
caller, in one visible list (tests/image/conftest.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-image.sh"
CONTAINERS_CONF = REPO_ROOT / ".cache" / "image" / "containers.conf"  # written by the build script
IMAGE = "localhost/imprimatur:dev"
BUILD_TIMEOUT_SECONDS = 900.0  # cold on a loaded 2-core VM: base ~120 s, pip install ~90 s
PODMAN_TIMEOUT_SECONDS = 120.0
RESULT_LINE = re.compile(r"^image=(?P<name>\S+) id=(?P<id>[0-9a-f]{64}) size=(?P<size>\d+)$", re.M)

Obj = dict[str, Any]


class ImageError(RuntimeError):
    """podman or the build failed, or the chart asks for something this translation does not know."""


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(
    *args: str, timeout: float = PODMAN_TIMEOUT_SECONDS, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS`` with this machine's settings; raises :class:`ImageError` on failure if ``check``."""
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, env=podman_env(), check=False
    )
    if check and result.returncode != 0:
        raise ImageError(
            f"podman {' '.join(args[:3])}... exited {result.returncode}: {result.stderr[-2000:]}"
        )
    return result


@dataclass(frozen=True)
class BuiltImage:
    """The image ``hack/build-image.sh`` left in podman's store, and what building it cost."""

    name: str
    id: str
    size: int  # bytes, as ``podman image inspect`` reports it
    seconds: float
    report: str  # the script's own lines: base built or cached, steps from the layer cache


def build_image() -> BuiltImage:
    started = time.monotonic()
    result = subprocess.run(
        [str(BUILD_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        env={**os.environ, "IMPRIMATUR_IMAGE": IMAGE},
        check=False,
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise ImageError(f"{BUILD_SCRIPT.name} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    found = RESULT_LINE.search(result.stdout)
    if found is None:
        raise ImageError(f"{BUILD_SCRIPT.name} printed no result line:\n{result.stdout}")
    return BuiltImage(found["name"], found["id"], int(found["size"]), seconds, result.stdout.strip())


# --- the chart's Deployment, as a kubelet would run it

_QUANTITY = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>m|Ki|Mi|Gi|k|M|G)?$")
_UNITS = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 1000**2, "G": 1000**3}


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (``512Mi``, ``1G``, ``1048576``) in bytes."""
    match = _QUANTITY.match(str(quantity))
    if match is None or match["unit"] == "m":
        raise ImageError(f"memory quantity {quantity!r}: not understood")
    return int(float(match["number"]) * _UNITS[match["unit"]])


def cpus(quantity: str) -> float:
    """A Kubernetes CPU quantity (``1``, ``500m``) in CPUs."""
    match = _QUANTITY.match(str(quantity))
    if match is None or match["unit"] not in (None, "m"):
        raise ImageError(f"cpu quantity {quantity!r}: not understood")
    return float(match["number"]) / (1000 if match["unit"] == "m" else 1)


@dataclass(frozen=True)
class PodContext:
    """What the API server and kubelet would supply: the pod's identity and its volumes' contents."""

    namespace: str
    pod_name: str
    secrets: Mapping[str, Mapping[str, bytes]]  # Secret name -> key -> bytes
    config_maps: Mapping[str, Mapping[str, str]]  # ConfigMap name -> key -> text
    volumes_dir: Path  # where the volumes' files are written on the host


def the_container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    if len(containers) != 1:
        raise ImageError(f"expected one container in the Deployment, found {len(containers)}")
    container: Obj = containers[0]
    return container


def _security(pod_spec: Obj, container: Obj) -> tuple[list[str], int | None]:
    pod_sc: Obj = dict(pod_spec.get("securityContext") or {})
    sc: Obj = dict(container.get("securityContext") or {})
    args: list[str] = []
    # A container's own field wins over the pod's, as in Kubernetes.
    user = sc.pop("runAsUser", pod_sc.pop("runAsUser", None))
    group = sc.pop("runAsGroup", pod_sc.pop("runAsGroup", None))
    non_root = sc.pop("runAsNonRoot", pod_sc.pop("runAsNonRoot", None))
    if user is not None:
        args.append(f"--user={user}:{group if group is not None else user}")
    if non_root and (user is None or int(user) == 0):
        raise ImageError("runAsNonRoot needs a numeric non-zero runAsUser here")
    fs_group = pod_sc.pop("fsGroup", None)
    if fs_group is not None:
        args.append(f"--group-add={fs_group}")
    seccomp = sc.pop("seccompProfile", pod_sc.pop("seccompProfile", None))
    if seccomp is not None and seccomp.get("type") != "RuntimeDefault":
        raise ImageError(f"seccompProfile {seccomp}: only RuntimeDefault (podman's default profile) is known")
    if sc.pop("readOnlyRootFilesystem", False):
        # Only the volumes are writable: podman's own tmpfs on /tmp, /var/tmp and /run are turned off.
        args += ["--read-only", "--read-only-tmpfs=false"]
    if sc.pop("allowPrivilegeEscalation", True) is False:
        args.append("--security-opt=no-new-privileges")
    capabilities = sc.pop("capabilities", {}) or {}
    args += [f"--cap-drop={c}" for c in capabilities.pop("drop", [])]
    args += [f"--cap-add={c}" for c in capabilities.pop("add", [])]
    left = {k: v for k, v in {**pod_sc, **sc, **capabilities}.items() if v is not None}
    if left:
        raise ImageError(f"securityContext fields not translated: {sorted(left)}")
    return args, fs_group


def _env(container: Obj, context: PodContext) -> list[str]:
    fields = {"metadata.namespace": context.namespace, "metadata.name": context.pod_name}
    args = []
    for variable in container.get("env", []):
        if "value" in variable:
            value = str(variable["value"])
        else:
            path = variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if path not in fields:
                raise ImageError(f"env {variable['name']}: {variable.get('valueFrom')} not translated")
            value = fields[path]
        args.append(f"--env={variable['name']}={value}")
    return args


def _write_volume(directory: Path, files: Mapping[str, bytes], mode: int, group: int | None) -> None:
    """Files as the kubelet projects a Secret or ConfigMap: owned by root, group fsGroup, ``mode``."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    for name, data in files.items():
        if "/" in name or name.startswith("."):
            raise ImageError(f"volume key {name!r}: not a plain file name")
        path = directory / name
        path.write_bytes(data)
        if group is not None and os.geteuid() == 0:
            os.chown(path, 0, group)
        path.chmod(mode)


def _volumes(pod_spec: Obj, container: Obj, context: PodContext, fs_group: int | None) -> list[str]:
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    args = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        target, read_only = mount["mountPath"], bool(mount.get("readOnly", False))
        source = context.volumes_dir / mount["name"]
        if "secret" in volume:
            secret = volume["secret"]
            data = context.secrets.get(secret["secretName"])
            if data is None:
                raise ImageError(f"volume {mount['name']}: no content for Secret {secret['secretName']}")
            data = _project(data, secret.get("items"))
            _write_volume(source, data, int(secret.get("defaultMode", 0o644)), fs_group)
        elif "configMap" in volume:
            config_map = volume["configMap"]
            text = context.config_maps.get(config_map["name"])
            if text is None:
                raise ImageError(f"volume {mount['name']}: ConfigMap {config_map['name']} was not rendered")
            data = _project({k: v.encode() for k, v in text.items()}, config_map.get("items"))
            _write_volume(source, data, int(config_map.get("defaultMode", 0o644)), fs_group)
        elif "emptyDir" in volume:
            options = ["rw", "mode=1777"]
            if volume["emptyDir"] and "sizeLimit" in volume["emptyDir"]:
                options.append(f"size={memory_bytes(volume['emptyDir']['sizeLimit'])}")
            args.append(f"--tmpfs={target}:{','.join(options)}")
            continue
        else:
            raise ImageError(f"volume {mount['name']}: kind {sorted(volume)} not translated")
        args.append(f"--volume={source}:{target}:{'ro' if read_only else 'rw'}")
    return args


def _project(data: Mapping[str, bytes], items: Sequence[Mapping[str, str]] | None) -> dict[str, bytes]:
    if not items:
        return dict(data)
    return {item["path"]: data[item["key"]] for item in items}


def _limits(container: Obj) -> list[str]:
    limits = (container.get("resources") or {}).get("limits") or {}
    args = []
    if "memory" in limits:
        args.append(f"--memory={memory_bytes(limits['memory'])}")
    if "cpu" in limits:
        args.append(f"--cpus={cpus(limits['cpu'])}")
    return args


def pod_arguments(deployment: Obj, context: PodContext) -> list[str]:
    """``podman run`` flags for the Deployment's one container, as its pod spec says to run it."""
    pod_spec = deployment["spec"]["template"]["spec"]
    container = the_container(deployment)
    security, fs_group = _security(pod_spec, container)
    return [
        *security,
        *_limits(container),
        *_env(container, context),
        *_volumes(pod_spec, container, context, fs_group),
    ]


def probe_url(deployment: Obj, probe: str, host: str = "127.0.0.1") -> str:
    """``http://host:PORT/PATH`` of the container's ``probe`` (an httpGet on a named or numbered port)."""
    container = the_container(deployment)
    get = container[probe]["httpGet"]
    port = get["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
    return f"http://{host}:{port}{get['path']}"


def wait_until(what: str, check: Callable[[], bool], timeout: float, alive: Callable[[], str | None]) -> None:
    """Poll ``check`` until true; fail early when ``alive`` returns why the container is gone."""
    deadline = time.monotonic() + timeout
    while not check():
        gone = alive()
        if gone is not None:
            raise ImageError(f"the container stopped while waiting until {what}: {gone}")
        if time.monotonic() > deadline:
            raise ImageError(f"not {what} within {timeout}s")
        time.sleep(0.2)
