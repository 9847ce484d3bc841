"""The recipe gate: a variant passes, fails or stays inconclusive by its ΔF1 *interval*.

A point ΔF1 on a few hundred queries moves by several F1 between two samples of one eval file,
so a gate on the point passes lucky variants and fails unlucky ones. The rule (:data:`RULE`):
with ``d`` = the variant's maximum F1 drop and ``[low, high]`` the 95 % paired-bootstrap
interval of its ΔF1 against the reference (:mod:`uner.bench.statistics`),

- **passed** when ``low >= -d`` (the whole interval is within the allowed drop),
- **failed** when ``high < -d`` (the whole interval is below it),
- **inconclusive** otherwise: the recipe benches twice the queries, up to ``bench.max_limit``,
  and a variant still inconclusive there is not published (as a failed one is not).
"""

from __future__ import annotations

PASSED, FAILED, INCONCLUSIVE, UNCHECKED = "passed", "failed", "inconclusive", "unchecked"
RULE = (
    "A variant passes when the whole 95 % interval of its ΔF1 (paired bootstrap over texts) lies at or above "
    "−max drop, fails when it lies wholly below, and is otherwise inconclusive: the recipe then benches twice the "
    "queries, up to its cap, and publishes only variants that passed."
)
_EPSILON = 1e-9  # a drop equal to the gate passes, whatever the float rounding


def delta_interval(bench: dict) -> tuple[float, float]:
    """The ΔF1 interval of a bench record; a record from before intervals has its point only."""
    interval = bench.get("delta_f1_ci95")
    if interval is None:
        return bench["delta_f1"], bench["delta_f1"]
    return interval[0], interval[1]


def verdict(bench: dict, max_drop: float) -> str:
    """PASSED, FAILED or INCONCLUSIVE for a bench record under a gate of ``max_drop`` F1 points."""
    low, high = delta_interval(bench)
    if low >= -max_drop - _EPSILON:
        return PASSED
    if high < -max_drop - _EPSILON:
        return FAILED
    return INCONCLUSIVE


def next_limit(limit: int | None, cap: int | None) -> int | None | bool:
    """The queries per file of the next bench of an inconclusive variant: twice ``limit``, at
    most ``cap`` (None: every query). False when ``limit`` already took all the cap allows."""
    if limit is None or (cap is not None and limit >= cap):
        return False
    return 2 * limit if cap is None else min(2 * limit, cap)


def limit_order(limit: int | None) -> float:
    """Sort key of limits: None (every query) after any number."""
    return float("inf") if limit is None else limit


def interval_text(values, spec: str) -> str:
    """``[low, high]`` with both bounds formatted by ``spec``."""
    return f"[{values[0]:{spec}}, {values[1]:{spec}}]"


def with_interval(value: float, interval, spec: str, interval_spec: str | None = None) -> str:
    """``value [low, high]``, or ``value`` alone when there is no interval (a record from before them)."""
    if not interval:
        return f"{value:{spec}}"
    return f"{value:{spec}} {interval_text(interval, interval_spec or spec)}"


def describe(bench: dict, max_drop: float) -> str:
    """``F1 28.80 [24.1, 33.0] (ΔF1 -1.20 [-2.31, -0.12], max drop 2.0, 900 queries)``."""
    f1 = with_interval(bench["f1"], bench.get("f1_ci95"), ".2f")
    delta = with_interval(bench["delta_f1"], delta_interval(bench), "+.2f")
    return f"F1 {f1} (ΔF1 {delta}, max drop {max_drop}, {bench['queries']} queries)"


def reason(bench: dict, max_drop: float, status: str) -> str:
    """Why a variant that did not pass is left out of a push, in one line."""
    interval = interval_text(delta_interval(bench), "+.2f")
    if status == FAILED:
        return f"ΔF1 {interval} lies below −{max_drop} (failed on {bench['queries']} queries)"
    return f"ΔF1 {interval} straddles −{max_drop} after {bench['queries']} queries (inconclusive at the cap)"
