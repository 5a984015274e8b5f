"""``imprimatur resolve``: the GitOps helper that pins every tag in manifests to its verified digest.

    imprimatur resolve -f deploy.yaml [-f more.yaml] [--in-place] (--policy FILE | identity flags)

Every image of every pod-bearing object (Pods, workload templates, ``List`` items) is decided by the
same engine as the webhook; each tag is rewritten to ``tag@sha256:<verified digest>``. The edit is made
in the text, on the exact span of each image scalar (found with the YAML composer's marks), so comments,
key order, quoting and indentation stay as they were; only the image strings change. The result goes to
stdout, or with ``--in-place`` back to each file (atomically, after every file resolved).

It refuses (exit 1, every failing image on stderr as ``Reason: image: detail``, nothing written) when any
image does not verify. An image no policy governs, allowed by a default of allow, has no verified digest:
it is left as written, with a warning. Exit 2 for unreadable input, as the other commands.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

import yaml

from controller.admission.pinning import image_sites, pinned
from controller.config import read_bounded_file
from controller.errors import InputError, PolicyError, Reason
from controller.model import Decision

EXIT_OK: Final = 0
EXIT_REJECTED: Final = 1
EXIT_USAGE: Final = 2
MAX_MANIFEST_BYTES: Final = 8 * 1024 * 1024
MAX_DOCUMENTS: Final = 4096
_POD_KINDS: Final = frozenset(
    {"Pod", "PodTemplate", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob"}
    | {"ReplicationController"}
)


@dataclass(frozen=True, slots=True)
class _Site:
    """One image scalar in a file: its text span, its quoting, the image, and the object it belongs to."""

    start: int
    end: int
    style: str | None
    image: str
    namespace: str
    label: str


@dataclass(frozen=True, slots=True)
class _Manifest:
    path: str
    text: str
    sites: tuple[_Site, ...]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``resolve`` to the CLI."""
    from controller.cli import add_common_options  # noqa: PLC0415 - the package imports this module

    p = sub.add_parser("resolve", help="pin every image tag in manifests to its verified digest")
    p.add_argument(
        "-f", "--filename", action="append", required=True, metavar="FILE", help="manifest YAML ('-': stdin)"
    )
    p.add_argument("-n", "--namespace", default=None, help="namespace for objects that do not name one")
    p.add_argument("--in-place", action="store_true", help="rewrite the files instead of printing them")
    add_common_options(p)
    p.set_defaults(run=run)


def _read(path: str) -> str:
    if path == "-":
        data = sys.stdin.buffer.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise InputError(
                Reason.MANIFEST_DOCUMENT_INVALID, f"stdin: larger than {MAX_MANIFEST_BYTES} bytes"
            )
    else:
        data = read_bounded_file(Path(path), MAX_MANIFEST_BYTES, "manifest")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(Reason.MANIFEST_DOCUMENT_INVALID, f"{path}: not UTF-8") from e


def _node_at(node: yaml.Node, pointer: str) -> yaml.Node | None:
    """The node at a JSON pointer below ``node`` (mapping keys, sequence indexes), or None."""
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, yaml.MappingNode):
            found = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == token]
            if len(found) != 1:
                return None
            node = found[0]
        elif isinstance(node, yaml.SequenceNode) and token.isdigit() and int(token) < len(node.value):
            node = node.value[int(token)]
        else:
            return None
    return node


def _objects(node: yaml.Node, data: object) -> list[tuple[yaml.Node, Mapping[str, object]]]:
    """The objects of one document: itself, or a List's items, each with its node."""
    if not isinstance(data, Mapping):
        return []
    items = data.get("items") if data.get("kind") == "List" else None
    if isinstance(items, list):
        nodes = _node_at(node, "/items")
        if not isinstance(nodes, yaml.SequenceNode) or len(nodes.value) != len(items):
            return []
        return [(n, i) for n, i in zip(nodes.value, items, strict=True) if isinstance(i, Mapping)]
    return [(node, data)]


def _scan(path: str, text: str, default_namespace: str) -> _Manifest:
    """Every image scalar of every pod-bearing object in one file."""
    loader = yaml.SafeLoader(text)
    sites: list[_Site] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # an empty document
                continue
            data = loader.construct_document(node)
            index += 1
            if index > MAX_DOCUMENTS:
                raise InputError(
                    Reason.MANIFEST_DOCUMENT_INVALID, f"{path}: more than {MAX_DOCUMENTS} documents"
                )
            for obj_node, obj in _objects(node, data):
                kind = str(obj.get("kind", ""))
                if kind not in _POD_KINDS:
                    continue
                meta = obj.get("metadata")
                meta = meta if isinstance(meta, Mapping) else {}
                namespace = str(meta.get("namespace") or default_namespace)
                label = f"{kind} {namespace}/{meta.get('name', '?')} ({path}[{index - 1}])"
                for site in image_sites(obj):
                    scalar = _node_at(obj_node, site.pointer)
                    if not isinstance(scalar, yaml.ScalarNode) or scalar.value != site.image:
                        raise InputError(
                            Reason.MANIFEST_DOCUMENT_INVALID, f"{label}: {site.pointer} not found"
                        )
                    sites.append(
                        _Site(
                            scalar.start_mark.index,
                            scalar.end_mark.index,
                            scalar.style,
                            site.image,
                            namespace,
                            label,
                        )
                    )
    except yaml.YAMLError as e:
        raise InputError(Reason.MANIFEST_DOCUMENT_INVALID, f"{path}: {e}") from e
    finally:
        loader.dispose()
    return _Manifest(path, text, tuple(sites))


def _scalar(value: str, style: str | None) -> str:
    """``value`` written as the original scalar was: plain, single- or double-quoted (references need no
    escaping: they hold no quote, backslash or space)."""
    if style in ("'", '"'):
        return f"{style}{value}{style}"
    return value


def _rewrite(manifest: _Manifest, pins: Mapping[tuple[str, str], str]) -> str:
    text = manifest.text
    done: set[int] = set()
    for site in sorted(manifest.sites, key=lambda s: s.start, reverse=True):
        target = pins.get((site.namespace, site.image))
        if target is None or site.start in done:  # an anchor shared by aliases is one span
            continue
        done.add(site.start)
        text = text[: site.start] + _scalar(target, site.style) + text[site.end :]
    return text


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if path.exists():
            Path(tmp).chmod(path.stat().st_mode & 0o7777)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Resolve and print (or rewrite) the manifests; 1 if any image does not verify."""
    from controller.cli import build_engine  # noqa: PLC0415 - the package imports this module

    paths: Sequence[str] = args.filename
    if args.in_place and "-" in paths:
        raise PolicyError(Reason.CONFIG_INVALID, "--in-place cannot rewrite stdin")
    manifests = [_scan(path, _read(path), args.namespace or "default") for path in paths]
    wanted: dict[str, list[str]] = {}
    for manifest in manifests:
        for site in manifest.sites:
            wanted.setdefault(site.namespace, []).append(site.image)
    engine = build_engine(args)
    decisions: dict[str, Decision] = {}
    try:
        for namespace, images in wanted.items():
            decisions[namespace] = engine.decide_images(list(dict.fromkeys(images)), namespace=namespace)
    finally:
        engine.close()

    refused = [(ns, v) for ns, d in decisions.items() for v in d.verdicts if not v.allowed]
    if refused:
        for namespace, verdict in refused:
            sys.stderr.write(f"{verdict.message()} (namespace {namespace})\n")
        sys.stderr.write(f"imprimatur resolve: {len(refused)} images do not verify; nothing written\n")
        return EXIT_REJECTED
    pins: dict[tuple[str, str], str] = {}
    for namespace, decision in decisions.items():
        for verdict in decision.verdicts:
            target = pinned(verdict.image, verdict)
            if target is not None:
                pins[(namespace, verdict.image)] = target
            elif "@" not in verdict.image:
                sys.stderr.write(
                    f"warning: {verdict.image}: {verdict.reason}: no verified digest; left as is\n"
                )
    results = [(m, _rewrite(m, pins)) for m in manifests]
    if args.in_place:
        for manifest, text in results:
            if text != manifest.text:
                _write_atomically(Path(manifest.path), text)
        return EXIT_OK
    for i, (_, text) in enumerate(results):
        if i and not text.startswith("---"):
            out.write("---\n")
        out.write(text)
        if not text.endswith("\n"):
            out.write("\n")
    return EXIT_OK
