"""The Prometheus text exposition, without a client library."""

from __future__ import annotations

import pytest

from controller.admission.metrics import MAX_LABEL_SETS, AdmissionMetrics, Counter, Gauge, Histogram


def test_counter_renders_with_help_type_and_escaped_labels() -> None:
    counter = Counter("demo_total", "Things.", ("kind", "reason"))
    counter.inc(kind="Pod", reason='say "hi"\\\n')
    counter.inc(2, kind="Pod", reason='say "hi"\\\n')
    assert counter.render() == [
        "# HELP demo_total Things.",
        "# TYPE demo_total counter",
        'demo_total{kind="Pod",reason="say \\"hi\\"\\\\\\n"} 3',
    ]


def test_counter_refuses_wrong_labels_and_going_down() -> None:
    counter = Counter("c_total", "c", ("a",))
    with pytest.raises(ValueError, match="labels"):
        counter.inc(b="x")
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1, a="x")


def test_label_sets_are_bounded() -> None:
    gauge = Gauge("g", "g", ("key",))
    for i in range(MAX_LABEL_SETS + 50):
        gauge.set(i, key=str(i))
    lines = gauge.render()
    assert len(lines) == 2 + MAX_LABEL_SETS + 1
    assert 'g{key="overflow"}' in "\n".join(lines)


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram("h_seconds", "h", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 0.5, 5.0):
        histogram.observe(value)
    assert histogram.render() == [
        "# HELP h_seconds h",
        "# TYPE h_seconds histogram",
        'h_seconds_bucket{le="0.1"} 1',
        'h_seconds_bucket{le="1"} 3',
        'h_seconds_bucket{le="+Inf"} 4',
        "h_seconds_sum 6.05",
        "h_seconds_count 4",
    ]


def test_admission_metrics_start_not_loaded() -> None:
    text = AdmissionMetrics().render()
    assert "imprimatur_policies_loaded 0\n" in text
    assert 'imprimatur_policies{state="invalid"} 0\n' in text
    assert "# TYPE imprimatur_admission_decisions_total counter" in text
    assert 'imprimatur_admission_duration_seconds_bucket{le="+Inf"} 0' in text
    assert text.endswith("\n")
