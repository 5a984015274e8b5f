"""The commands that live in modules of their own, in the order ``imprimatur --help`` lists them.

Each module has ``register(subparsers)``, which adds its parser and sets ``run(args, out) -> int``
as the parser's default: ``main`` calls it and returns its exit code.
"""

from __future__ import annotations

from argparse import _SubParsersAction
from typing import Any, Protocol


class CommandModule(Protocol):
    def register(self, sub: _SubParsersAction[Any]) -> None: ...
