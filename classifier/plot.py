"""The cost-quality curve as a PNG (matplotlib is imported here only, when a plot is asked for)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from classifier.metrics import RoutingCurve


def plot_routing_curves(curves: Mapping[str, RoutingCurve], path: Path, title: str) -> Path:
    """Quality against the share of strong calls for each router, with the cheap and strong levels.
    Returns the file written: `path`, with ".png" added when it has no suffix (as matplotlib does)."""
    path = path if path.suffix else path.with_name(path.name + ".png")
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    try:
        for name, curve in curves.items():
            axes.plot(curve.strong_share * 100, curve.quality * 100, label=name, linewidth=1.5)
        any_curve = next(iter(curves.values()))
        axes.axhline(any_curve.cheap_quality * 100, color="grey", linestyle="--", label="cheap only")
        axes.axhline(any_curve.strong_quality * 100, color="black", linestyle="--", label="strong only")
        axes.set_xlabel("strong calls (%)")
        axes.set_ylabel("quality (%)")
        axes.set_title(title)
        axes.legend(loc="lower right")
        axes.grid(alpha=0.3)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path
