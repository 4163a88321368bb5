"""The publication figure: the headline chart (misaligned rate vs k) of the current filter and chart options as
SVG, PDF or PNG, drawn offline with matplotlib, and the methods paragraph that names exactly the conditions it
shows.

The figure is drawn from the very figure dict the charts page plots (browse.charts.misaligned_vs_k): the same
rates, Wilson intervals, lines, panels and pooling note, so the file and the page cannot disagree. Each line is an
SVG group with the id `rate <panel> · <line>`, and each panel's frame `panel <panel>`, so a reader (or a test)
can find them.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display: draw to files only (set before pyplot is imported)
# The PDF backend subsets its fonts with fontTools, which logs every glyph list at INFO: hundreds of lines a PDF.
logging.getLogger("fontTools").setLevel(logging.WARNING)

import matplotlib.pyplot as plt  # noqa: E402
from django.db.models import QuerySet  # noqa: E402

from transcripts.aggregates import cell_counts  # noqa: E402
from transcripts.models import Condition  # noqa: E402

from .chart_layout import pooled_text  # noqa: E402
from .chart_options import AXES, ChartRequest  # noqa: E402
from .charts import misaligned_vs_k  # noqa: E402

FORMATS = {"svg": "image/svg+xml", "pdf": "application/pdf", "png": "image/png"}
PANEL_COLUMNS = 3
PANEL_INCHES = (4.2, 3.2)
PNG_DPI = 200
# Every text stays text in the SVG (searchable, editable in a vector editor), and fonts are embedded as
# TrueType in the PDF (journals refuse Type 3 fonts).
STYLE = {"svg.fonttype": "none", "pdf.fonttype": 42, "font.size": 9, "axes.spines.top": False,
         "axes.spines.right": False}


@dataclass
class Panel:
    title: str
    traces: list[dict]


def _panels(figure: dict) -> list[Panel]:
    """The figure's panels in order, each with its title (from the chart's panel annotations) and traces."""
    titles = [a["text"] for a in figure["layout"].get("annotations", [])]
    refs = list(dict.fromkeys(trace["xaxis"] for trace in figure["data"]))
    return [Panel(titles[i] if i < len(titles) else "", [t for t in figure["data"] if t["xaxis"] == ref])
            for i, ref in enumerate(refs)]


def draw(figure: dict, fmt: str) -> bytes:
    """The headline figure dict drawn as `fmt` (svg, pdf or png)."""
    panels = _panels(figure) or [Panel("", [])]
    columns = min(PANEL_COLUMNS, len(panels))
    rows = -(-len(panels) // columns)
    scale = figure["layout"].get("xaxis", {}).get("type")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, columns, squeeze=False, sharey=True,
                                 figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows + 0.9))
        for ax, panel in zip(axes.flat, panels, strict=False):
            ax.patch.set_gid(f"panel {panel.title}")
            ax.set_title(panel.title, fontsize=9)
            ticks = sorted({k for trace in panel.traces for k in trace["customdata"]})
            for trace in panel.traces:
                ks = trace["customdata"]
                # As on the page: k = 0 has no place on a log axis, so it is drawn at k + 1 with ticks labelled k;
                # "evenly spaced" places the ks at equal steps.
                xs = [k + 1 for k in ks] if scale == "log" else [ticks.index(k) for k in ks] \
                    if scale == "category" else ks
                bars = ax.errorbar(xs, trace["y"], yerr=[trace["error_y"]["arrayminus"], trace["error_y"]["array"]],
                                   color=trace["line"]["color"], marker="o", markersize=3.5, capsize=2.5,
                                   linewidth=1.2, label=trace["name"] if trace["showlegend"] else None)
                bars.lines[0].set_gid(f"rate {panel.title} · {trace['name']}")
            if scale == "log":
                ax.set_xscale("log")
                ax.set_xticks([k + 1 for k in ticks], [str(k) for k in ticks])
                ax.minorticks_off()
            elif scale == "category":
                ax.set_xticks(range(len(ticks)), [str(k) for k in ticks])
            else:
                ax.set_xticks(ticks)
            ax.set_ylim(0, 1)
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
            ax.set_xlabel("in-context examples k")
            ax.grid(axis="y", linewidth=0.4, alpha=0.5)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax in axes[:, 0]:
            ax.set_ylabel("misaligned rate (95% Wilson CI)")
        pooled = pooled_text(figure["layout"].get("meta", {}).get("pooled", {}))
        fig.suptitle("Misaligned rate vs k" + (f"\n{pooled}" if pooled else ""), fontsize=10)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        for ax in axes.flat[1 : len(panels)]:
            more = ax.get_legend_handles_labels()
            handles += more[0]
            labels += more[1]
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False,
                       title=figure["layout"]["legend"]["title"]["text"] or None)
        fig.tight_layout(rect=(0, 0.12 if handles else 0, 1, 1))
        out = io.BytesIO()
        fig.savefig(out, format=fmt, dpi=PNG_DPI, metadata=_metadata(fmt))
        plt.close(fig)
    return out.getvalue()


def _metadata(fmt: str) -> dict:
    """The file's own metadata: who made it (fixed dates keep the bytes reproducible where the format has them)."""
    if fmt == "png":
        return {"Software": "EM Audit (matplotlib)"}
    if fmt == "pdf":
        return {"Creator": "EM Audit (matplotlib)", "CreationDate": None}
    return {"Creator": "EM Audit (matplotlib)", "Date": None}


def figure_for(queryset: QuerySet, request: ChartRequest) -> dict:
    """The headline chart's figure dict: what the page plots and the files draw."""
    return misaligned_vs_k(queryset, request)


def _values(conditions: list[Condition], axis: str) -> list[str]:
    values = sorted({c.experiment.name if axis == "experiment" else getattr(c, AXES[axis].field)
                     for c in conditions})
    if axis == "dataset":
        return [v or "none (k = 0 controls)" for v in values]
    return [str(v) for v in values]


def methods_paragraph(queryset: QuerySet, figure: dict) -> str:
    """The paragraph for the figure: the conditions it counts (those with a judged answer under the filter), by
    axis, the number of judged answers, what it pools, and how the intervals are computed."""
    counts = [row for row in cell_counts(queryset) if row["n"]]
    conditions = list(Condition.objects.filter(pk__in={row["condition_id"] for row in counts})
                      .select_related("experiment").order_by("pk"))
    if not conditions:
        return "The figure shows no judged answers: the filter matches none."
    n = sum(row["n"] for row in counts)
    described = "; ".join(f"{AXES[axis].label.lower()} {', '.join(_values(conditions, axis))}" for axis in AXES)
    pooled = pooled_text(figure["layout"].get("meta", {}).get("pooled", {}))
    return (
        f"The figure shows the misaligned rate against the number of in-context examples k over {n:,} judged "
        f"answers in {len(conditions)} condition{'s' if len(conditions) != 1 else ''} ({described}). "
        + (f"Each point is {pooled[0].lower()}{pooled[1:]}. " if pooled else "")
        + "An answer counts when both judges scored it and it was neither a refusal, code, nor an unsure verdict; "
        "error bars are 95% Wilson score intervals."
    )
