"""``python -m demo`` runs end to end and gets every answer it expects."""

from __future__ import annotations

import io

from demo.__main__ import run


def test_demo_answers_as_expected() -> None:
    out = io.StringIO()
    assert run(out) == 0, out.getvalue()
    text = out.getvalue()
    assert "12/12 answers as expected" in text
    assert "MISMATCH" not in text
    assert "denied [403]: SignatureNotFound: " in text
