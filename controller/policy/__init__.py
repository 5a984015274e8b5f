"""Image policies: the CRD form, the compiled form, which policies govern an image, and evaluation.

This layer rests only on :mod:`controller.model` and :mod:`controller.errors`; it knows nothing of
registries or of how signatures are verified.
"""

from controller.policy.attestations import CompiledAttestation
from controller.policy.cel import CelCondition, CelError, compile_condition
from controller.policy.compiled import (
    CompiledPolicy,
    IdentityMatcher,
    StringMatcher,
    compile_document,
    compile_policy,
    policy_from_flags,
)
from controller.policy.crd import KNOWN_CLAIMS, PolicyDocument, parse_policy
from controller.policy.evaluate import PolicyResult, evaluate_policy, most_informative
from controller.policy.glob import ImageGlob, normalize_image_name
from controller.policy.invalid import InvalidPolicy, compile_policy_lenient
from controller.policy.keys import KeyMatcher, PolicyKey, SecretResolver, no_secrets, parse_public_key
from controller.policy.policyset import AnyPolicy, Matching, PolicySet, load_policies
from controller.policy.regex import Regexp, RegexpError, compile_regexp
from controller.policy.scope import (
    EMPTY_LABELS,
    UNSCOPED,
    LabelSelector,
    NamespaceScope,
    ScopeError,
    SelectorRequirement,
    parse_scope,
)
from controller.policy.tenancy import Combined, DefaultDecision, combine, evaluate_invalid

__all__ = [
    "EMPTY_LABELS",
    "KNOWN_CLAIMS",
    "UNSCOPED",
    "AnyPolicy",
    "CelCondition",
    "CelError",
    "Combined",
    "CompiledAttestation",
    "CompiledPolicy",
    "DefaultDecision",
    "IdentityMatcher",
    "ImageGlob",
    "InvalidPolicy",
    "KeyMatcher",
    "LabelSelector",
    "Matching",
    "NamespaceScope",
    "PolicyDocument",
    "PolicyKey",
    "PolicyResult",
    "PolicySet",
    "Regexp",
    "RegexpError",
    "ScopeError",
    "SecretResolver",
    "SelectorRequirement",
    "StringMatcher",
    "combine",
    "compile_condition",
    "compile_document",
    "compile_policy",
    "compile_policy_lenient",
    "compile_regexp",
    "evaluate_invalid",
    "evaluate_policy",
    "load_policies",
    "most_informative",
    "no_secrets",
    "normalize_image_name",
    "parse_policy",
    "parse_public_key",
    "parse_scope",
    "policy_from_flags",
]
