"""Paired differences with a 95% Student-t interval: the one format every comparison in docs/benchmarks/ uses."""

import math
import statistics

__all__ = ["format_interval", "paired_difference"]


def paired_difference(a, b, metric, a_values, b_values, units, *, digits=2, unit_key="per_seed"):
    """a − b over matched units (seeds, or starting states): the differences, their mean and sample standard
    deviation, a 95% Student-t interval of the mean (None for one unit), n and in how many units a > b.

    ``a_values`` / ``b_values`` are sequences aligned with ``units``; ``unit_key`` names the list of differences
    (``per_seed`` for seeds, ``per_state`` for starting states), ``units`` are stored beside it.
    """
    from scipy import stats

    if not (len(a_values) == len(b_values) == len(units)):
        raise ValueError(f"{a} − {b} ({metric}): {len(a_values)} and {len(b_values)} values for {len(units)} units")
    diffs = [round(x - y, digits + 2) for x, y in zip(a_values, b_values)]
    n = len(diffs)
    mean = statistics.mean(diffs) if n else math.nan
    std = statistics.stdev(diffs) if n > 1 else 0.0
    # one unit has no interval: null in the JSON (NaN is not JSON)
    half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n) if n > 1 else None
    return {
        "a": a,
        "b": b,
        "metric": metric,
        unit_key: [round(d, digits) for d in diffs],
        "units": list(units),
        "n": n,
        "mean": round(mean, digits),
        "std": round(std, digits),
        "ci95": None if half is None else [round(mean - half, digits), round(mean + half, digits)],
        "better_in": f"{sum(d > 0 for d in diffs)}/{n}",
    }


def format_interval(ci95, spec="+.1f"):
    """``[low, high]`` of a paired difference's interval in ``spec``, or "-" where one unit gave none."""
    return "-" if ci95 is None else f"[{ci95[0]:{spec}}, {ci95[1]:{spec}}]"
