"""A private, test-time Sigstore: a Fulcio-like CA, CT and Rekor keys, and cosign's legacy ``.sig`` layers.

Everything is generated in memory at test time, relative to an injected "now"; nothing is written to the
repository. The output is byte- and shape-compatible with real production cosign (see
``tests/kit_tests``, which checks it against the real signatures in ``../shared/testdata``).
"""
