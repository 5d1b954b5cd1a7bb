"""The PNG plots of a tuning run's report page (matplotlib, the Agg canvas; no pyplot, no display).

Each plot is a function of a :class:`tunekit.report.RunReport` that returns PNG bytes; figures are
built on ``matplotlib.figure.Figure`` with an Agg canvas (no global pyplot state, works without a
display) and saved without the "Software" metadata, so the same run gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tunekit.report import RunReport

__all__ = ["PLOTS", "plots"]

SLACK_WARNING = 0.05  # a limit with less than 5% left is drawn red: tunekit's binding ratio is 95%
_DPI = 100


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _log_axis(axis) -> None:
    """A log axis labelled with plain numbers (1, 2, 5, 10, ...) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _label(term: str) -> str:
    return term.removesuffix("_us").replace("_", " ")


def candidates(report: RunReport) -> bytes:
    """Per family: every feasible configuration's predicted time against the share of its binding
    limit, one colour per binding limit; the winner starred."""
    shown = [f for f in report.families if f.points]
    figure = _figure(4.2 * max(1, len(shown)), 3.6)
    axes = figure.subplots(1, max(1, len(shown)), squeeze=False)[0]
    for ax, family in zip(axes, shown, strict=False):
        bindings = sorted({p.binding for p in family.points})
        for binding in bindings:
            points = [p for p in family.points if p.binding == binding]
            ax.scatter(
                [100 * p.binding_share for p in points],
                [p.time_us for p in points],
                s=14,
                alpha=0.7,
                label=binding.replace("_", " "),
            )
        if report.winner is not None and report.winner.family == family.family:
            w = report.winner
            ax.scatter([100 * w.binding_share], [w.time_us], marker="*", s=160, c="black", label="chosen")
        more = f", best {len(family.points)} shown" if len(family.points) < family.feasible else ""
        ax.set_title(f"{family.family}: {family.feasible:,} feasible{more}", fontsize=9)
        ax.set_xlabel("share of the binding limit used (%)")
        ax.set_ylabel("predicted µs per step")
        ax.set_yscale("log")
        _log_axis(ax.yaxis)
        ax.legend(fontsize=6, markerscale=0.6, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2)
    if not shown:
        axes[0].text(0.5, 0.5, "no family has a feasible configuration", ha="center", va="center")
        axes[0].set_axis_off()
    empty = [f.family for f in report.families if not f.points]
    if empty and shown:
        figure.suptitle(f"no configuration fits {', '.join(empty)}", fontsize=8)
    return _png(figure)


def slack(report: RunReport) -> bytes:
    """The chosen configuration's slack on every hardware limit: 1 - used / limit, as bars."""
    rows = [(name, used, limit, unit) for name, used, limit, unit in report.limits if limit > 0]
    figure = _figure(7.5, 0.8 + 0.32 * max(1, len(rows)))
    ax = figure.subplots()
    if not rows:
        ax.text(0.5, 0.5, "no configuration chosen", ha="center", va="center")
        ax.set_axis_off()
        return _png(figure)
    names = [name.replace("_", " ") for name, *_ in rows]
    slacks = [100 * (1 - used / limit) for _, used, limit, _ in rows]
    colours = ["tab:red" if s < 100 * SLACK_WARNING else "tab:green" for s in slacks]
    positions = list(range(len(rows)))
    ax.barh(positions, slacks, color=colours)
    ax.set_yticks(positions, names, fontsize=8)
    ax.invert_yaxis()
    for y, (value, (_, used, limit, unit)) in enumerate(zip(slacks, rows, strict=True)):
        ax.text(max(value, 0) + 1, y, f"{used:,} / {limit:,} {unit}", va="center", fontsize=7)
    ax.set_xlim(min(0, min(slacks)), 130)
    ax.set_xlabel("slack: share of the limit left unused (%)")
    ax.set_title(f"{report.winner.name if report.winner else ''}", fontsize=7)
    return _png(figure)


def feasible(report: RunReport) -> bytes:
    """How many configurations each family has that fit (log scale; none is written out)."""
    figure = _figure(5.0, 3.0)
    ax = figure.subplots()
    names = [f.family for f in report.families]
    counts = [f.feasible for f in report.families]
    ax.bar(names, [max(c, 0.8) for c in counts], color=["tab:blue" if c else "lightgrey" for c in counts])
    for x, count in enumerate(counts):
        ax.text(x, max(count, 0.8) * 1.1, f"{count:,}" if count else "none fits", ha="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(0.5, max([*counts, 1]) * 4)
    ax.set_ylabel("feasible configurations")
    return _png(figure)


def cost_terms(report: RunReport) -> bytes:
    """The cost terms of each family's best configuration and then the next fastest (ten bars),
    stacked as the model adds them: the largest of the overlapping terms (tensor, shared memory,
    register, load latency), then every other term."""
    from tunekit.report import COMPUTE_TERMS, compared_points

    points = compared_points(report)
    figure = _figure(8.5, 4.0)
    ax = figure.subplots()
    if not points:
        ax.text(0.5, 0.5, "no feasible configuration", ha="center", va="center")
        ax.set_axis_off()
        return _png(figure)
    serial = sorted({t for p in points for t, v in p.terms.items() if t not in COMPUTE_TERMS and v > 0})
    labels = [f"{p.family} {100 * p.time_us / points[0].time_us:.0f}%" for p in points]
    positions = list(range(len(points)))
    bottoms = [0.0] * len(points)
    compute = [max((p.terms.get(t, 0.0) for t in COMPUTE_TERMS), default=0.0) for p in points]
    ax.bar(positions, compute, label="compute: largest of tensor,\nshared memory, register, load latency")
    bottoms = list(compute)
    for term in serial:
        values = [p.terms.get(term, 0.0) for p in points]
        ax.bar(positions, values, bottom=bottoms, label=_label(term))
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    ax.scatter(positions, [p.time_us for p in points], marker="_", s=300, c="black", label="predicted total")
    ax.set_xticks(positions, labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("µs per step")
    ax.set_xlabel("configuration: family, predicted time relative to the fastest shown")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(figure)


def measured(report: RunReport) -> bytes:
    """Measured median against predicted µs per step, with the line where they are equal."""
    figure = _figure(4.5, 4.0)
    ax = figure.subplots()
    for family in sorted({m.family for m in report.measurements}):
        rows = [m for m in report.measurements if m.family == family]
        ax.scatter([m.predicted_us for m in rows], [m.measured_us for m in rows], label=family, s=20)
    values = [v for m in report.measurements for v in (m.predicted_us, m.measured_us) if v > 0]
    low, high = min(values) / 1.5, max(values) * 1.5
    ax.plot([low, high], [low, high], color="grey", linewidth=1, label="measured = predicted")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_axis(ax.xaxis)
    _log_axis(ax.yaxis)
    ax.set_xlabel("predicted µs per step")
    ax.set_ylabel("measured µs per step (median)")
    ax.legend(fontsize=7)
    return _png(figure)


# file name -> plot; measured.png only where measurements exist
PLOTS: dict[str, Callable[[RunReport], bytes]] = {
    "candidates.png": candidates,
    "slack.png": slack,
    "feasible.png": feasible,
    "cost_terms.png": cost_terms,
    "measured.png": measured,
}


def plots(report: RunReport) -> dict[str, bytes]:
    """Every plot the page links, by file name."""
    return {
        name: plot(report) for name, plot in PLOTS.items() if name != "measured.png" or report.measurements
    }
