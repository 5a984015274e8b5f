"""Pure verification: bytes, a trust root and a time in; a VerifiedSignature or a reasoned error out.

Nothing in this package reads the clock, a file or the network. The entry points:

* :class:`TrustRoot`: Sigstore's ``trusted_root.json``, parsed once (:mod:`.trustroot`).
* :func:`verify_simplesigning`: one legacy cosign ``.sig`` layer (:mod:`.simplesigning` holds the
  numbered checklist and the order of checks); key-signed when ``VerifyOptions.keys`` is given (:mod:`.keyed`).
* :func:`verify_attestation_layer`: one legacy cosign ``.att`` layer (:mod:`.attestation`).
* :func:`verify_bundle`: one Sigstore bundle (OCI referrer) for an image digest, and
  :func:`verify_blob` for a file's digest (:mod:`.bundle` holds the checklist; :mod:`.bundle_model`
  the wire format; :mod:`.dsse` DSSE envelopes and in-toto statements).
"""

from controller.verify.attestation import verify_attestation_layer
from controller.verify.bundle import verify_blob, verify_bundle, verify_bundle_artifact
from controller.verify.options import VerifyOptions
from controller.verify.simplesigning import verify_simplesigning
from controller.verify.trustroot import TrustRoot

__all__ = [
    "TrustRoot",
    "VerifyOptions",
    "verify_attestation_layer",
    "verify_blob",
    "verify_bundle",
    "verify_bundle_artifact",
    "verify_simplesigning",
]
