"""The plotly layout the charts share: labels of axis values, a grid of panels (one per facet value), rates drawn
with their Wilson 95% error bars (analysis.statistics.wilson), a colour per line, and the note of what a chart
pools, said on the chart itself."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from analysis.statistics import wilson
from judging.palette import PALETTE

from .chart_options import AXES

PANEL_COLUMNS = 3
PANEL_TITLE_CHARS = 40  # characters of a panel title that fit over one of three panels at 1,366 px


def has_points(figure: dict) -> bool:
    """Whether any trace of a figure has a value to draw (a chart of unjudged or "unsure" transcripts has none)."""
    for trace in figure["data"]:
        values = trace.get("z") or [trace.get("y") or []]
        if any(value is not None for row in values for value in row):
            return True
    return False


def label(axis: str | None, value: object) -> str:
    if axis is None:
        return "all"
    if value == "":
        return "(no examples)" if axis == "dataset" else "(none)"
    return str(value)


# Up to this many values are named; more are counted.
POOLED_NAMED = 4


def pooled_text(pooled: Mapping[str, list]) -> str:
    """What a chart pools, as it says on the chart: e.g. "pooled over: CoT mode (off, native); temperature
    (0.7, 1.0)"; "" when it pools nothing."""
    parts = []
    for axis, values in pooled.items():
        named = ", ".join(label(axis, v) for v in values) if len(values) <= POOLED_NAMED else str(len(values))
        parts.append(f"{AXES[axis].label} ({named})")
    return f"pooled over: {'; '.join(parts)}" if parts else ""


# The pooling note is broken into lines of about this many characters, to fit a half-width chart.
POOLED_LINE = 60


def say_pooled(layout: dict, pooled: Mapping[str, list]) -> None:
    """Say on the chart itself, under its title, what it pools (nothing when it pools nothing); the axes and
    values are also in layout.meta.pooled, for the publication figure (browse.figure)."""
    if text := pooled_text(pooled):
        lines = [""]
        for part in text.split("; "):
            if lines[-1] and len(lines[-1]) + len(part) > POOLED_LINE:
                lines.append("")
            lines[-1] += f"{part}; "
        layout["title"].update(
            subtitle={"text": "<br>".join(line.rstrip("; ") + ";" for line in lines)[:-1],
                      "font": {"color": "#8a4b00"}},
            # At the top, with room below for the lines and the panels' titles.
            y=1, yref="container", yanchor="top", pad={"t": 14},
        )
        layout["margin"] = {"t": 90 + 16 * len(lines)}
        layout["meta"] = {**layout.get("meta", {}), "pooled": dict(pooled)}


def _rate_points(groups: dict) -> tuple[list, list, list, list, list]:
    xs, ys, plus, minus, texts = [], [], [], [], []
    for x in sorted(groups):
        m, n = groups[x]
        if n == 0:  # nothing judged yet: no point, rather than a misleading 0%
            continue
        rate, low, high = wilson(m, n)
        xs.append(x)
        ys.append(rate)
        plus.append(high - rate)
        minus.append(rate - low)
        texts.append(f"{m}/{n}")
    return xs, ys, plus, minus, texts


def panel_grid(layout: dict, axis: str | None, panels: list, x_axis: dict, y_axis: dict, *, row_height: int = 320
            ) -> dict[object, tuple[str, str]]:
    """Lay out one subplot per panel value in a grid of up to PANEL_COLUMNS columns (y shared across panels),
    titled by value; returns panel value → the (xaxis, yaxis) names its traces use."""
    columns = min(PANEL_COLUMNS, len(panels)) or 1
    rows = math.ceil(len(panels) / columns) or 1
    gap_x, gap_y = 0.06, 0.12 / rows
    refs = {}
    annotations = []
    for index, panel in enumerate(panels):
        row, column = divmod(index, columns)
        suffix = "" if index == 0 else str(index + 1)
        x0 = column / columns + (gap_x / 2 if column else 0)
        x1 = (column + 1) / columns - (gap_x / 2 if column < columns - 1 else 0)
        y1 = 1 - row / rows - (gap_y / 2 if row else 0)
        y0 = 1 - (row + 1) / rows + (gap_y if row < rows - 1 else 0)
        layout[f"xaxis{suffix}"] = {**x_axis, "domain": [x0, x1], "anchor": f"y{suffix}"}
        if row < rows - 1 and index + columns < len(panels):
            layout[f"xaxis{suffix}"]["title"] = {"text": ""}  # the bottom row says what x is
        layout[f"yaxis{suffix}"] = {**y_axis, "domain": [y0, y1], "anchor": f"x{suffix}",
                                    **({"matches": "y"} if index else {})}
        if column:  # the left column says what y is
            layout[f"yaxis{suffix}"].update(title={"text": ""}, showticklabels=False)
        if axis is not None:
            title = f"{AXES[axis].label}: {label(axis, panel)}"
            # A long model id (a fine-tune job name) would run over its neighbours' titles: cut it to the
            # panel's width; the whole title shows on hover.
            width = PANEL_TITLE_CHARS * 3 // columns
            annotations.append({
                "text": title if len(title) <= width else title[:width - 1] + "…", "hovertext": title,
                "showarrow": False,
                "xref": "paper", "yref": "paper", "x": (x0 + x1) / 2, "y": y1, "xanchor": "center", "yanchor": "bottom",
            })
        refs[panel] = (f"x{suffix}", f"y{suffix}")
    layout["annotations"] = annotations
    layout["height"] = 140 + row_height * rows
    return refs


def rate_traces(tally: dict, panels: list, lines: list, refs: dict, name_of: Callable[[object], str],
                 trace_of: Callable[[list, object], dict]) -> list[dict]:
    """One plotly trace per (panel, line) of rates with their Wilson error bars, in panel then line order, each
    line in the legend once; `trace_of(xs, line)` adds what the chart type draws (its x, type, colour, hover)."""
    data, in_legend = [], set()
    for (panel, line) in sorted(tally, key=lambda key: (panels.index(key[0]), lines.index(key[1]))):
        xs, ys, plus, minus, texts = _rate_points(tally[(panel, line)])
        name = name_of(line)
        data.append({
            "name": name, "legendgroup": name, "showlegend": name not in in_legend, "y": ys, "text": texts,
            "xaxis": refs[panel][0], "yaxis": refs[panel][1],
            "error_y": {"type": "data", "array": plus, "arrayminus": minus, "visible": True},
            **trace_of(xs, line),
        })
        in_legend.add(name)
    return data


def line_colours(lines: list) -> dict[object, str]:
    return {line: PALETTE[index % len(PALETTE)] for index, line in enumerate(lines)}


