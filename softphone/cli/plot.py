"""`report --plot`: calls and answer times per hour, and the ring-to-answer distribution.

matplotlib with the Agg backend (no display needed); imported only when a plot is asked for.
"""
from __future__ import annotations

from typing import Any


def draw(figures: dict[str, Any], path: str) -> None:
    """Write the report's charts to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    hours = figures["by_hour"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    x = [h["hour"] for h in hours]
    top.bar(x, [h["answered"] for h in hours], color="#4c9a2a", label="answered")
    top.bar(x, [h["calls"] - h["answered"] for h in hours], bottom=[h["answered"] for h in hours],
            color="#d1495b", label="not answered")
    top.set_xlabel("hour of the day")
    top.set_ylabel("calls")
    top.set_xticks(range(0, 24))
    top.set_xlim(-0.6, 23.6)
    right = top.twinx()
    nan = float("nan")  # hours without answered calls break the lines instead of bridging them
    means = [nan if h["ring_to_answer_mean_ms"] is None else h["ring_to_answer_mean_ms"] / 1000
             for h in hours]
    maxes = [nan if h["ring_to_answer_max_ms"] is None else h["ring_to_answer_max_ms"] / 1000
             for h in hours]
    right.plot(x, means, "o-", color="#00798c", label="mean ring to answer")
    right.plot(x, maxes, "x--", color="#edae49", label="max ring to answer")
    limit_s = _r1_limit_s(figures)
    right.axhline(limit_s, color="#888888", linestyle=":", label=f"R1: {figures['max_rings']} rings")
    right.set_ylabel("seconds from ring to answer")
    right.set_ylim(bottom=0)
    lines, labels = top.get_legend_handles_labels()
    more, more_labels = right.get_legend_handles_labels()
    top.legend(lines + more, labels + more_labels, loc="upper center", fontsize="small",
               bbox_to_anchor=(0.5, -0.12), ncol=5, frameon=False)
    top.yaxis.set_major_locator(MaxNLocator(integer=True))
    span = f"{(figures['from'] or 'start')[:10]} to {(figures['to'] or 'now')[:10]}"
    top.set_title(f"Calls and answer times per hour ({span})")

    bins = figures["ring_to_answer_histogram"]
    if bins:
        bottom.bar([b["from_ms"] / 1000 for b in bins], [b["count"] for b in bins], width=0.9,
                   align="edge", color="#00798c")
    bottom.axvline(limit_s, color="#888888", linestyle=":")
    dist = figures["ring_to_answer_ms"]
    if dist["count"]:
        bottom.axvline(dist["p50"] / 1000, color="#4c9a2a", label=f"p50 {dist['p50'] / 1000:.1f} s")
        bottom.axvline(dist["p90"] / 1000, color="#edae49", label=f"p90 {dist['p90'] / 1000:.1f} s")
        bottom.legend(fontsize="small")
    bottom.set_xlabel("ring to answer (s)")
    bottom.set_ylabel("answered calls")
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_title(f"Ring-to-answer distribution ({dist['count']} answered calls)")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _r1_limit_s(figures: dict[str, Any]) -> float:
    """Where the last allowed ring ends (default cadence 1 s on / 4 s off: 15 s)."""
    return figures.get("r1_limit_ms", 5000 * figures["max_rings"]) / 1000
