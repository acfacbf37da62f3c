"""The soak's memory verdict: flat once warm, judged on the steady span only, never on a short run."""

from __future__ import annotations

from bench.soak import memory_report

WARMUP = 4500


def samples(rss, seconds=7200, every=10):
    return [(float(t), rss(t)) for t in range(0, seconds, every)]


def test_a_service_that_fills_its_windows_then_levels_off_is_flat():
    report = memory_report(samples(lambda t: 80 + min(t, 4200) / 20 + (t // 10 % 3)), WARMUP)
    assert report["flat"] is True
    assert report["second_half_growth_mb"] > 0.05 * 200  # what the warm-up alone would have failed


def test_growth_after_the_warmup_is_not_flat():
    report = memory_report(samples(lambda t: 300 + t / 100), WARMUP)  # 36 MB an hour: about 24 MB between the ends of the steady span
    assert report["flat"] is False
    assert 20 < report["steady_growth_mb"] < 30


def test_a_run_too_short_for_a_steady_span_gets_no_verdict():
    assert memory_report(samples(lambda t: 100.0, seconds=600), WARMUP)["flat"] is None
    assert memory_report(samples(lambda t: 100.0, seconds=WARMUP + 1700), WARMUP)["flat"] is None
