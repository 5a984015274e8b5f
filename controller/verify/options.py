"""Per-policy switches that relax legacy-signature verification. The defaults are cosign's."""

from __future__ import annotations

from dataclasses import dataclass

from controller.model import TrustedKey


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """What a policy may relax. Every relaxation that takes effect is logged and reported as a warning.

    * ``require_tlog``: a signature without a ``dev.sigstore.cosign/bundle`` annotation is
      ``TlogEntryMissing``. When False, it verifies with a warning, and the chain, SCT and leaf
      validity are checked at the ``now`` given (so only a still-valid certificate passes). A bundle
      that *is* present is always verified.
    * ``require_sct``: a certificate without a valid embedded SCT is ``SCTMissing``/``SCTInvalid``.
      When False, that failure becomes a warning.
    * ``require_issuer_extension``: a certificate without Fulcio's OIDC issuer extension (.1.8 or
      .1.1) is ``IssuerMissing``. When False (for 2021-era certificates), the issuer is "".
    """

    require_tlog: bool = True
    require_sct: bool = True
    require_issuer_extension: bool = True
    keys: tuple[TrustedKey, ...] = ()  # key-signed artifacts verify with one of these (identities[].key)
