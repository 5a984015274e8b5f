"""``validate-policies``: refuse an invalid ClusterImagePolicy, ImagePolicy or TrustRoot at ``kubectl apply``.

Each object is compiled with exactly the compilers the operator uses (:func:`compile_policy_entry`,
:func:`compile_trust_root_entry`, which reads the referenced ConfigMap or Secret), so what is refused
here is what the controller could not load, and nothing is written twice. A refusal is a
:class:`kopf.AdmissionError` whose message is the compile error, ``PolicyInvalid: <Kind name>: <field>:
<problem>`` or ``TrustRootInvalid: TrustRoot <name>: <problem>``, with code 422 (400 for an object that
is not one of our kinds at all).

Two cases are admitted with a warning instead, because refusing them would only get in the way:

* a TrustRoot whose ConfigMap or Secret does not exist *yet* (``kubectl apply -f dir/`` creates objects
  in file order); its status shows it not ready until the data exists, and policies naming it deny;
  likewise a policy whose key identity's ``secretRef`` names a Secret (key) not there yet;
* an UPDATE that leaves ``spec`` unchanged (labels, annotations, finalizers) of an object that was
  already invalid: it cannot make anything worse, and refusing it would wedge the object.

A policy naming a trust root that is not loaded gets a warning too: it is valid, and denies until the
root exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import kopf

from controller.admission.exceptions import Exceptions  # issue 8
from controller.admission.kube import KubeReader
from controller.admission.objects import (
    POLICY_KINDS,
    TRUST_ROOT_KIND,
    compile_policy_entry,
    compile_trust_root_entry,
    object_key,
)
from controller.admission.policy_keys import PolicyKeys
from controller.admission.status import TrustRootReadiness, trust_root_problem
from controller.admission.webhook import ReviewContext, current_review
from controller.errors import InputError, Reason
from controller.policy.exceptions import EXCEPTION_KIND  # issue 8

log = logging.getLogger(__name__)

CODE_INVALID: Final = 422
CODE_MALFORMED: Final = 400
CODE_INTERNAL: Final = 500
REVIEW_TIMEOUT_SECONDS: Final = 8.0  # below the chart's webhook timeoutSeconds (10)


def _spec(obj: object) -> object:
    return obj.get("spec") if isinstance(obj, Mapping) else None


class PolicyReview:
    """The ``validate-policies`` handler, bound to the controller's API reader and namespace."""

    def __init__(
        self,
        reader: KubeReader | None,
        namespace: str | None,
        trust_roots: Callable[[], TrustRootReadiness] | None = None,
    ) -> None:
        self.reader = reader
        self.namespace = namespace
        self._trust_roots = trust_roots
        self.exceptions: Exceptions | None = None  # issue 8: ImagePolicyException reviews (operator sets it)

    async def validate(
        self,
        *,
        body: Mapping[str, object],
        operation: str | None = None,
        old: Mapping[str, object] | None = None,
        warnings: list[str],
        userinfo: Mapping[str, object] | None = None,  # issue 8: who creates an ImagePolicyException
        **_: Any,
    ) -> None:
        """kopf ``@on.validate`` handler: returns to admit, raises :class:`kopf.AdmissionError` to refuse."""
        try:
            ctx = current_review()
        except InputError:
            ctx = None  # called directly (tests, a local server without the review context)
        if ctx is not None:
            ctx.handled = True
        try:
            if body.get("kind") == EXCEPTION_KIND:  # issue 8
                reason = self._validate_exception(
                    body, operation, old, warnings=warnings, userinfo=userinfo, ctx=ctx
                )
            else:
                reason = await self._validate(body, operation, old, warnings)
        except kopf.AdmissionError as e:
            if ctx is not None:
                ctx.reason = str(e).split(":", 1)[0]
            raise
        except Exception as e:  # never admit on a bug; say what kind of bug in the log, not the response
            log.exception("validate-policies: %s failed", object_key(body))
            if ctx is not None:
                ctx.reason = str(Reason.INTERNAL_ERROR)
            raise kopf.AdmissionError(
                f"{Reason.INTERNAL_ERROR}: {object_key(body)}: {type(e).__name__}", code=CODE_INTERNAL
            ) from e
        if ctx is not None:
            ctx.reason = reason

    def _validate_exception(  # issue 8
        self,
        body: Mapping[str, object],
        operation: str | None,
        old: Mapping[str, object] | None,
        *,
        warnings: list[str],
        userinfo: Mapping[str, object] | None,
        ctx: ReviewContext | None,
    ) -> str:
        if operation not in ("CREATE", "UPDATE"):
            return "Allowed"
        if self.exceptions is None:
            raise kopf.AdmissionError(
                f"{Reason.INTERNAL_ERROR}: {object_key(body)}: exceptions are not configured",
                code=CODE_INTERNAL,
            )
        username = userinfo.get("username") if userinfo is not None else None
        if ctx is not None and ctx.request.username is not None:
            username = ctx.request.username  # the review as parsed strictly by our server
        dry_run = ctx.request.dry_run if ctx is not None else False
        return self.exceptions.review(
            body, operation, old, username if isinstance(username, str) else None, warnings, dry_run=dry_run
        )

    async def _validate(
        self,
        body: Mapping[str, object],
        operation: str | None,
        old: Mapping[str, object] | None,
        warnings: list[str],
    ) -> str:
        if operation not in ("CREATE", "UPDATE"):
            return "Allowed"
        kind = body.get("kind")
        unchanged = operation == "UPDATE" and old is not None and _spec(old) == _spec(body)
        if kind in POLICY_KINDS:
            keys = PolicyKeys(self.reader, self.namespace, compile_policy_entry)  # identities[].key.secretRef
            async with asyncio.timeout(REVIEW_TIMEOUT_SECONDS):
                entry = await keys.compile(body)
            missing = keys.unresolved(body)
            if not entry.ready and missing and keys.compile_as_if_present(body).ready:
                # only its key Secret is missing: like a TrustRoot's, it may come next in the file
                names = ", ".join(f"Secret {self.namespace}/{n}[{k}]" for n, k in missing[:4])
                warnings.append(
                    f"{entry.reason}: {entry.detail}: {names} missing yet; the policy denies"[:1024]
                )
                return str(entry.reason)
            if not entry.ready:
                if unchanged:
                    warnings.append(f"{entry.reason}: {entry.detail}"[:1024])
                    return str(entry.reason)
                raise kopf.AdmissionError(f"{entry.reason}: {entry.detail}", code=CODE_INVALID)
            problem = trust_root_problem(entry, self._trust_roots() if self._trust_roots else None)
            if problem is not None:
                warnings.append(f"{Reason.TRUST_ROOT_UNKNOWN}: {problem}: the policy denies until it is")
            return "Compiled"
        if kind == TRUST_ROOT_KIND:
            try:
                async with asyncio.timeout(REVIEW_TIMEOUT_SECONDS):
                    root = await compile_trust_root_entry(body, self.reader, self.namespace)
            except TimeoutError as e:
                raise kopf.AdmissionError(
                    f"{Reason.TRUST_ROOT_INVALID}: {object_key(body)}: its data could not be read "
                    f"within {REVIEW_TIMEOUT_SECONDS:g}s",
                    code=CODE_INTERNAL,
                ) from e
            if root.ready:
                return "Loaded"
            message = f"{root.reason}: {root.key}: {root.detail}"
            if root.ref_missing:
                warnings.append(f"{message} yet: the TrustRoot is not ready until it does"[:1024])
                return str(root.reason)
            if unchanged:
                warnings.append(message[:1024])
                return str(root.reason)
            raise kopf.AdmissionError(message, code=CODE_INVALID)
        raise kopf.AdmissionError(
            f"{Reason.REVIEW_INVALID}: {object_key(body)}: validate-policies reviews only "
            f"{', '.join((*POLICY_KINDS, TRUST_ROOT_KIND))}",
            code=CODE_MALFORMED,
        )
