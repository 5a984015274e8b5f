"""``imprimatur``: verify images and check manifests with the same engine the webhook uses.

Exit codes: 0 verified/admitted, 1 rejected, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import yaml

from controller.cli.commands import CommandModule
from controller.config import Settings, read_bounded_file
from controller.engine import Engine, builtin_trust_roots
from controller.errors import ImprimaturError, InputError, PolicyError, Reason
from controller.model import Decision, ImageVerdict
from controller.policy import CompiledPolicy, PolicySet, load_policies, policy_from_flags
from controller.registry import Keychain, RegistryClient, RegistryConfig
from controller.verify import TrustRoot
from controller.workload import images_of

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2

# Bounds on files the CLI reads: policies, manifests, trust roots and registry configs are small.
MAX_INPUT_FILE_BYTES = 8 * 1024 * 1024
CLI_TIMEOUT_SECONDS = 60.0
MAX_TIMEOUT_SECONDS = 3600.0

# Commands in modules of their own (see controller/cli/commands.py), by module name, one per line.
COMMAND_MODULES: tuple[str, ...] = (
    "controller.cli.blob",
    "controller.cli.attest",
    "controller.cli.resolve",
    "controller.cli.report",
)


def _seconds(text: str) -> float:
    """A positive number of seconds for ``--timeout`` (at most an hour)."""
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from e
    if not 0 < value <= MAX_TIMEOUT_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r} is not in (0, {MAX_TIMEOUT_SECONDS:g}] seconds")
    return value


class _UsageError(Exception):
    """Raised for a CLI misuse that argparse cannot express (exit code 2)."""


def _read_file(path: str) -> bytes:
    data = sys.stdin.buffer.read(MAX_INPUT_FILE_BYTES + 1) if path == "-" else _read_bounded(Path(path))
    if len(data) > MAX_INPUT_FILE_BYTES:
        raise _UsageError(f"{path}: larger than {MAX_INPUT_FILE_BYTES} bytes")
    return data


def _read_bounded(path: Path) -> bytes:
    return read_bounded_file(path, MAX_INPUT_FILE_BYTES, "file")


def add_common_options(sp: argparse.ArgumentParser) -> None:
    """The options every engine-backed command shares: policies, identity flags, roots, registries."""
    sp.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="FILE",
        help="policy YAML (repeatable, multi-document)",
    )
    sp.add_argument("--certificate-identity", help="exact subject (email, URI or username)")
    sp.add_argument("--certificate-identity-regexp", help="subject regex (anchored: full match)")
    sp.add_argument("--certificate-oidc-issuer", help="exact OIDC issuer")
    sp.add_argument("--certificate-oidc-issuer-regexp", help="OIDC issuer regex (anchored: full match)")
    sp.add_argument("--key", metavar="FILE", help="a PEM public key to trust instead of a keyless identity")
    sp.add_argument(
        "-a",
        "--annotations",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="required payload annotation (repeatable), as cosign's -a",
    )
    sp.add_argument(
        "--trusted-root",
        action="append",
        default=[],
        metavar="[NAME=]FILE",
        help="a Sigstore trusted_root.json; a bare FILE replaces 'public-good'",
    )
    sp.add_argument("--staging", action="store_true", help="flag policies use the embedded staging root")
    sp.add_argument(
        "--registry-config", metavar="FILE", help="registries.yaml (k3s/RKE2 format): mirrors, auth, tls"
    )
    sp.add_argument(
        "--docker-config",
        metavar="FILE",
        help="docker config.json with registry credentials (default: $DOCKER_CONFIG/config.json)",
    )
    sp.add_argument(
        "--signature-repository",
        metavar="REPO",
        default=os.environ.get("COSIGN_REPOSITORY") or None,
        help="where signatures are stored (cosign's COSIGN_REPOSITORY)",
    )
    sp.add_argument(
        "--insecure-ignore-tlog",
        action="store_true",
        help="accept signatures without a Rekor entry (warns) for flag policies",
    )
    sp.add_argument(
        "--insecure-ignore-sct", action="store_true", help="do not require an embedded SCT (warns)"
    )
    sp.add_argument(
        "--allow-missing-issuer",
        action="store_true",
        help="accept pre-2022 certificates without the OIDC issuer extension",
    )
    sp.add_argument("--require-digest", action="store_true", help="reject tag-only references")
    sp.add_argument(
        "--timeout",
        type=_seconds,
        default=CLI_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"deadline for each decision, registry reads included (default {CLI_TIMEOUT_SECONDS:g})",
    )
    sp.add_argument("-o", "--output", choices=("text", "json"), default="text")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imprimatur", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = p.add_subparsers(dest="command", required=True)
    common = add_common_options

    v = sub.add_parser("verify", help="verify images' cosign keyless signatures")
    v.add_argument("images", nargs="+", metavar="IMAGE")
    common(v)

    c = sub.add_parser("check", help="evaluate every pod template in Kubernetes manifests")
    c.add_argument(
        "-f", "--filename", action="append", required=True, metavar="FILE", help="manifest YAML ('-': stdin)"
    )
    c.add_argument("-n", "--namespace", default=None, help="namespace for objects that do not name one")
    common(c)

    s = sub.add_parser("serve", help="run the admission webhook (kopf operator)")
    s.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="FILE",
        help="serve from policy files instead of the cluster's CRDs (development and demo)",
    )
    # Commands in modules of their own: each adds its parser with ``set_defaults(run=...)``. Imported
    # here, not at the top, because they use this module's helpers (build_engine, add_common_options).
    for name in COMMAND_MODULES:
        module: CommandModule = importlib.import_module(name)
        module.register(sub)
    return p


def _trust_roots(args: argparse.Namespace) -> dict[str, TrustRoot]:
    roots = builtin_trust_roots()
    for spec in args.trusted_root:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = "public-good", spec
        roots[name] = TrustRoot.from_json(_read_file(path), name)
    return roots


def _policies(args: argparse.Namespace) -> list[CompiledPolicy]:
    policies: list[CompiledPolicy] = []
    for path in args.policy:
        policies.extend(load_policies(_read_file(path).decode("utf-8", errors="strict")))
    flags = (
        args.certificate_identity,
        args.certificate_identity_regexp,
        args.certificate_oidc_issuer,
        args.certificate_oidc_issuer_regexp,
        args.key,
    )
    if any(flags):
        annotations: dict[str, str] = {}
        for item in args.annotations:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise _UsageError(f"-a {item!r}: expected KEY=VALUE")
            annotations[key] = value
        policies.append(
            policy_from_flags(
                certificate_identity=args.certificate_identity,
                certificate_identity_regexp=args.certificate_identity_regexp,
                certificate_oidc_issuer=args.certificate_oidc_issuer,
                certificate_oidc_issuer_regexp=args.certificate_oidc_issuer_regexp,
                annotations=annotations,
                tlog_required=not args.insecure_ignore_tlog,
                trust_root="staging" if args.staging else "public-good",
                key_pem=None if args.key is None else _read_file(args.key),
            )
        )
    elif args.annotations:
        raise _UsageError(
            "-a needs --key, or --certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp]"
        )
    if not policies:
        raise _UsageError(
            "give --policy FILE, --key FILE, "
            "or --certificate-identity[-regexp] with --certificate-oidc-issuer[-regexp]"
        )
    return policies


def _keychain(args: argparse.Namespace) -> Keychain | None:
    path = args.docker_config
    if path is None:
        default = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
        if not default.is_file():
            return None
        path = str(default)
    return Keychain.from_docker_config(_read_file(path))


def build_engine(args: argparse.Namespace) -> Engine:
    """The engine the CLI uses: the same one the webhook uses, configured from flags."""
    registry_config = (
        RegistryConfig.from_yaml(_read_file(args.registry_config).decode("utf-8"))
        if args.registry_config
        else None
    )
    settings = Settings(
        require_digest=args.require_digest,
        require_sct=not args.insecure_ignore_sct,
        require_issuer_extension=not args.allow_missing_issuer,
        signature_repository=args.signature_repository,
        warn_on_tag=True,
        # A person at a terminal can wait longer than kube-apiserver's 10 s webhook timeout.
        decision_timeout_seconds=args.timeout,
        fetch_timeout_seconds=args.timeout,
    )
    return Engine(
        registry=RegistryClient(config=registry_config, keychain=_keychain(args)),
        policies=PolicySet(_policies(args)),
        trust_roots=_trust_roots(args),
        settings=settings,
    )


def _verdict_json(v: ImageVerdict) -> dict[str, object]:
    return {
        "image": v.image,
        "allowed": v.allowed,
        "reason": str(v.reason),
        "detail": v.detail,
        "digest": str(v.digest) if v.digest else None,
        "policies": list(v.policies),
        "warnings": list(v.warnings),
        "signatures": [
            {
                "subject": s.subject,
                "issuer": s.issuer,
                "logIndex": s.log_index,
                "integratedTime": s.integrated_time.isoformat() if s.integrated_time else None,
                "claims": dict(s.claims),
                "annotations": dict(s.annotations),
                "source": s.source,
            }
            for s in v.signers
        ],
    }


def _print_decision(decision: Decision, output: str, out: TextIO, label: str | None = None) -> None:
    if output == "json":
        return  # collected by the caller
    if label:
        out.write(f"{label}: {'ADMIT' if decision.allowed else 'DENY'}\n")
    for v in decision.verdicts:
        indent = "  " if label else ""
        if v.allowed:
            pinned = (
                v.image if v.digest is None or v.image.endswith(f"@{v.digest}") else f"{v.image}@{v.digest}"
            )
            out.write(f"{indent}OK {pinned}\n")
            for s in v.signers:
                when = s.integrated_time.isoformat() if s.integrated_time else "-"
                out.write(f"{indent}  Subject: {s.subject}\n{indent}  Issuer: {s.issuer}\n")
                out.write(
                    f"{indent}  Rekor log index: {s.log_index if s.log_index is not None else '-'}"
                    f"  Integrated time: {when}\n"
                )
        else:
            out.write(f"{indent}DENIED {v.message()}\n")
        for w in v.warnings:
            out.write(f"{indent}  warning: {w}\n")


def _cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    engine = build_engine(args)
    try:
        decision = engine.decide_images(args.images)
    finally:
        engine.close()
    if args.output == "json":
        json.dump(
            {"allowed": decision.allowed, "images": [_verdict_json(v) for v in decision.verdicts]},
            out,
            indent=2,
        )
        out.write("\n")
    else:
        _print_decision(decision, "text", out)
    return EXIT_OK if decision.allowed else EXIT_REJECTED


def _load_documents(paths: Sequence[str]) -> list[tuple[str, dict[str, object]]]:
    docs: list[tuple[str, dict[str, object]]] = []
    for path in paths:
        text = _read_file(path).decode("utf-8")
        try:
            loaded = list(yaml.safe_load_all(text))
        except yaml.YAMLError as e:
            raise InputError(Reason.MANIFEST_DOCUMENT_INVALID, f"{path}: {e}") from e
        for i, doc in enumerate(loaded):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise InputError(Reason.MANIFEST_DOCUMENT_INVALID, f"{path} document {i}: not a mapping")
            items = doc.get("items") if doc.get("kind") == "List" else None
            if isinstance(items, list):
                docs.extend((f"{path}[{i}]", item) for item in items if isinstance(item, dict))
            else:
                docs.append((f"{path}[{i}]", doc))
    return docs


_POD_KINDS = {
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
    "PodTemplate",
}


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    docs = _load_documents(args.filename)
    engine = build_engine(args)
    results: list[dict[str, object]] = []
    allowed = True
    try:
        for where, doc in docs:
            kind = str(doc.get("kind", ""))
            if kind not in _POD_KINDS:
                continue  # Services, ConfigMaps ...: nothing to admit
            meta = doc.get("metadata")
            meta = meta if isinstance(meta, dict) else {}
            namespace = str(meta.get("namespace") or args.namespace or "default")
            label = f"{kind} {namespace}/{meta.get('name', '?')} ({where})"
            decision = engine.decide_images([c.image for c in images_of(doc)], namespace=namespace)
            allowed = allowed and decision.allowed
            if args.output == "json":
                results.append(
                    {
                        "object": label,
                        "allowed": decision.allowed,
                        "images": [_verdict_json(v) for v in decision.verdicts],
                    }
                )
            else:
                _print_decision(decision, "text", out, label)
    finally:
        engine.close()
    if args.output == "json":
        json.dump({"allowed": allowed, "objects": results}, out, indent=2)
        out.write("\n")
    return EXIT_OK if allowed else EXIT_REJECTED


def _cmd_serve(args: argparse.Namespace) -> int:
    # Imported here so that `verify` and `check` never load kopf and aiohttp.
    from controller.admission.server import run  # noqa: PLC0415

    return run(policy_files=list(args.policy))


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``imprimatur`` console script."""
    stream = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        run = getattr(args, "run", None)
        if run is not None:
            return int(run(args, stream))
        if args.command == "verify":
            return _cmd_verify(args, stream)
        if args.command == "check":
            return _cmd_check(args, stream)
        return _cmd_serve(args)
    except _UsageError as e:
        sys.stderr.write(f"imprimatur: {e}\n")
        return EXIT_USAGE
    except (PolicyError, InputError) as e:
        sys.stderr.write(f"imprimatur: {e.reason}: {e.detail}\n")
        return EXIT_USAGE
    except ImprimaturError as e:  # anything else reasoned that escaped a verdict
        sys.stderr.write(f"imprimatur: {e.reason}: {e.detail}\n")
        return EXIT_REJECTED
