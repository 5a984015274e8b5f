"""Image policies: the CRD form, the compiled form, which policies govern an image, and evaluation.

This layer rests only on :mod:`controller.model` and :mod:`controller.errors`; it knows nothing of
registries or of how signatures are verified.
"""

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
from controller.policy.policyset import PolicySet, load_policies

__all__ = [
    "KNOWN_CLAIMS",
    "CompiledPolicy",
    "IdentityMatcher",
    "ImageGlob",
    "PolicyDocument",
    "PolicyResult",
    "PolicySet",
    "StringMatcher",
    "compile_document",
    "compile_policy",
    "evaluate_policy",
    "load_policies",
    "most_informative",
    "normalize_image_name",
    "parse_policy",
    "policy_from_flags",
]
