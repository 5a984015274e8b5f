"""Logging filters: what kopf would log that is not worth a line.

kopf logs every :class:`kopf.AdmissionError` (a denial, which kopf treats as a ``PermanentError``) at
ERROR, as ``Webhook 'id' failed permanently: ...``. A denial is no error: each one is already logged as
one structured decision line. A handler that fails for real logs that itself (``log.exception``) before
it denies, so dropping these lines hides no error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Final

KOPF_OBJECT_LOGGER: Final = "kopf.objects"


class DenialFilter(logging.Filter):
    """Drops kopf's ERROR line for the denials of the given webhook ids; every other record passes."""

    def __init__(self, webhooks: Iterable[str]) -> None:
        super().__init__()
        ids = "|".join(re.escape(w) for w in webhooks)
        self._denial = re.compile(f"^Webhook '(?:{ids})' failed permanently: ")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.ERROR or record.exc_info:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to drop
            return True
        return self._denial.match(message) is None


def quiet_admission_denials(webhooks: Iterable[str]) -> None:
    """Install a :class:`DenialFilter` for ``webhooks`` on kopf's per-object logger (idempotent)."""
    logger = logging.getLogger(KOPF_OBJECT_LOGGER)
    for existing in [f for f in logger.filters if isinstance(f, DenialFilter)]:
        logger.removeFilter(existing)
    logger.addFilter(DenialFilter(webhooks))
