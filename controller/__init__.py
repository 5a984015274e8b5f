"""Imprimatur: admit only images that carry a valid cosign keyless signature from a trusted identity."""

__version__ = "0.1.0"
