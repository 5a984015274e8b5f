"""Prometheus metrics in the text exposition format (0.0.4), with no client library.

https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format

Only what the controller needs: counters and gauges with labels, and one histogram without labels.
Every metric bounds the number of label sets it keeps, so a caller cannot grow memory without end.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections.abc import Sequence
from typing import Final

MAX_LABEL_SETS: Final = 1024
"""Label sets kept per metric; further new sets are folded into one ``overflow`` series."""

DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _LabelledMetric:
    """A metric family with fixed label names and a bounded number of label sets."""

    kind = "untyped"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[LabelValues, float] = {}
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labelnames)}")
        key = tuple(labels[n] for n in self.labelnames)
        if key not in self._values and len(self._values) >= MAX_LABEL_SETS:
            key = tuple("overflow" for _ in self.labelnames)
        return key

    def value(self, **labels: str) -> float:
        """The current value of one series (0 if never set)."""
        with self._lock:
            return self._values.get(tuple(labels[n] for n in self.labelnames), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.documentation}", f"# TYPE {self.name} {self.kind}"]
        with self._lock:
            items = sorted(self._values.items())
        lines.extend(f"{self.name}{_labels(self.labelnames, k)} {_format_value(v)}" for k, v in items)
        return lines


class Counter(_LabelledMetric):
    """A monotonically increasing count."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        with self._lock:
            key = self._key(labels)
            self._values[key] = self._values.get(key, 0.0) + amount

    def inc_values(self, values: LabelValues, amount: float = 1.0) -> None:
        """:meth:`inc` with the label values in ``labelnames`` order: no keyword dict on the hot path."""
        if amount < 0 or len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: bad increment {amount} for labels {values!r}")
        with self._lock:
            current = self._values.get(values)
            if current is None and len(self._values) >= MAX_LABEL_SETS:
                values = tuple("overflow" for _ in self.labelnames)
                current = self._values.get(values)
            self._values[values] = (current or 0.0) + amount


class Gauge(_LabelledMetric):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[self._key(labels)] = value


class Histogram:
    """Observations counted into cumulative buckets, with their sum and count (no labels)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self.name = name
        self.documentation = documentation
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)  # per bucket, not cumulative; the last is +Inf
        self._sum = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)  # the first bucket whose bound is >= value
        with self._lock:
            self._counts[index] += 1
            self._sum += value
            self._count += 1

    def render(self) -> list[str]:
        with self._lock:
            counts, total, count = list(itertools.accumulate(self._counts[:-1])), self._sum, self._count
        lines = [f"# HELP {self.name} {self.documentation}", f"# TYPE {self.name} histogram"]
        for bound, n in zip(self.buckets, counts, strict=True):
            lines.append(f'{self.name}_bucket{{le="{_format_value(bound)}"}} {n}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {count}')
        lines.append(f"{self.name}_sum {_format_value(total)}")
        lines.append(f"{self.name}_count {count}")
        return lines


class AdmissionMetrics:
    """The controller's metrics, rendered at ``/metrics``."""

    def __init__(self) -> None:
        self.fast_answers = Counter(
            "imprimatur_admission_fast_answers_total",
            "Reviews answered on the event loop without waiting: cached verdicts, or shed (by path).",
            ("path",),
        )
        self.decisions = Counter(
            "imprimatur_admission_decisions_total",
            "Admission reviews answered, by object kind, outcome and reason.",
            ("kind", "allowed", "reason"),
        )
        self.duration = Histogram(
            "imprimatur_admission_duration_seconds", "Time to answer an admission review, in seconds."
        )
        self.policies_loaded = Gauge(
            "imprimatur_policies_loaded",
            "1 once policies and trust roots are loaded; until then every review is denied.",
        )
        self.policies = Gauge("imprimatur_policies", "Policies known, by state.", ("state",))
        self.trust_roots = Gauge("imprimatur_trust_roots", "Custom trust roots known, by state.", ("state",))
        # --- background re-verification (issue 8: controller/admission/background.py)
        self.running_images = Gauge(
            "imprimatur_running_images",
            "Distinct running images (per namespace) at the last background cycle, by verdict and reason.",
            ("verdict", "reason"),
        )
        self.background_cycle_seconds = Gauge(
            "imprimatur_background_cycle_duration_seconds", "Wall time of the last background cycle."
        )
        self.background_cycle_time = Gauge(
            "imprimatur_background_last_cycle_timestamp_seconds",
            "When the last background cycle ended (Unix).",
        )
        self.background_images_checked = Gauge(
            "imprimatur_background_images_checked",
            "Distinct (namespace, image) pairs the last cycle decided.",
        )
        # --- end background
        self.policies_loaded.set(0)
        for state in ("ready", "invalid"):
            self.policies.set(0, state=state)
            self.trust_roots.set(0, state=state)

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.decisions,
            self.fast_answers,
            self.duration,
            self.policies_loaded,
            self.policies,
            self.trust_roots,
            self.running_images,  # background (issue 8)
            self.background_cycle_seconds,
            self.background_cycle_time,
            self.background_images_checked,
        ):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
