"""Plain-text rendering of evaluation results for the command line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from classifier.scorer import HEADS


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def labelled_table(columns: Mapping[str, Mapping[str, Any]]) -> str:
    """Metrics of one or more models (column name -> labelled_metrics) side by side."""
    names = list(columns)
    lines = ["metric".ljust(28) + "".join(name[:24].rjust(26) for name in names)]
    first = next(iter(columns.values()))
    lines.append("rows".ljust(28) + "".join(str(columns[name]["n"]).rjust(26) for name in names))
    for head in HEADS:
        for metric in ("auroc", "ece", "log_loss", "brier", "positive_rate", "mean_probability"):
            if metric not in first[head]:
                continue
            cells = "".join(_number(columns[name][head][metric]).rjust(26) for name in names)
            lines.append(f"{head} {metric}".ljust(28) + cells)
    return "\n".join(lines)


def routing_table(reports: Mapping[str, Mapping[str, Any]]) -> str:
    """Routing reports (router name -> RoutingReport.to_json()) as rows."""
    lines = ["router".ljust(16) + "APGR".rjust(8) + "CPT(50%)".rjust(10) + "CPT(80%)".rjust(10) + "CPT(95%)".rjust(10)]
    for name, report in reports.items():
        cpt = report["cpt"]
        lines.append(
            name[:16].ljust(16)
            + _number(report["apgr"]).rjust(8)
            + "".join(_number(cpt[level]).rjust(10) for level in ("50%", "80%", "95%"))
        )
    return "\n".join(lines)
