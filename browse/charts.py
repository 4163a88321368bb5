"""The figures as plotly figure dicts, computed from a filtered transcript queryset, and the per-question table.

Rates come from `transcripts.aggregates.cell_counts` (verdict counts per condition × question) and persona shares
from `category_counts`; Python maps those rows to the condition's axes (analysis.axes: model, dataset,
k, …) and adds Wilson 95% intervals (analysis.statistics.wilson). A transcript counts towards a rate when
`misaligned` is not NULL, i.e. it was judged and not excluded (refusal, code, judge unsure).

Every chart that can be split is coloured by one axis and faceted (one panel each) by another, chosen in the
URL (`colour=system_prompt&facet=dataset`, browse.chart_options); the defaults are the paper's figure: one line
per model, one panel per dataset. A control without examples (k = 0, no dataset) belongs to every dataset's panel
or line, so each dataset's curve starts from its baseline as in the paper.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from django.db.models import QuerySet

from analysis.statistics import wilson
from judging.palette import PALETTE
from transcripts.aggregates import category_counts, cell_counts
from transcripts.models import Condition, Experiment, Question
from transcripts.sampling import SCATTER_POINTS, sample_scores

from .chart_options import AXES, DEFAULT_REQUEST, ChartOptions, ChartRequest, transcript_links

PANEL_COLUMNS = 3
PANEL_TITLE_CHARS = 40  # characters of a panel title that fit over one of three panels at 1,366 px


def has_points(figure: dict) -> bool:
    """Whether any trace of a figure has a value to draw (a chart of unjudged or "unsure" transcripts has none)."""
    for trace in figure["data"]:
        values = trace.get("z") or [trace.get("y") or []]
        if any(value is not None for row in values for value in row):
            return True
    return False


def _label(axis: str | None, value: object) -> str:
    if axis is None:
        return "all"
    if value == "":
        return "(no examples)" if axis == "dataset" else "(none)"
    return str(value)


def _condition_axes(condition_ids: Iterable[int], axes: Iterable[str]) -> dict[int, dict[str, object]]:
    """condition id → {axis: value} for the given conditions (a small table, looked up by primary key)."""
    fields = {axis: AXES[axis].field for axis in set(axes)}
    rows = Condition.objects.filter(pk__in=list(condition_ids)).order_by().values("pk", *fields.values())
    return {row["pk"]: {axis: row[name] for axis, name in fields.items()} for row in rows}


def _groups(axis: str | None, condition: dict[str, object], datasets: set[str]) -> list[object]:
    """The groups (lines or panels) a condition belongs to on `axis`: its own value, except that a control
    without a dataset joins every dataset present."""
    if axis is None:
        return [None]
    value = condition[axis]
    if axis == "dataset" and value == "" and datasets:
        return sorted(datasets)
    return [value]


Tally = dict[tuple[object, object], dict[object, list[int]]]  # (panel, line) → x → [misaligned, n]


def _sum_rows(rows: list[dict], key: Callable[[dict], tuple[int, object]]) -> dict[tuple[int, object], list[int]]:
    """[misaligned, n] summed per key(row) = (condition id, what x depends on besides the condition)."""
    sums: dict[tuple[int, object], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        cell = sums[key(row)]
        cell[0] += row["misaligned"]
        cell[1] += row["n"]
    return sums


def _tally(queryset: QuerySet, options: ChartOptions, key: Callable[[dict], tuple[int, object]],
           x_of: Callable[[dict, object], object], *x_axes: str) -> tuple[Tally, dict[str, list]]:
    """Counts per (panel, line) and x, and what they pool: the axes the chart does not show (neither colour,
    facet nor x) that take more than one value within one point, with those values. The count rows (one per
    condition × question) are summed per `key` first, so the axes are looked up once per condition rather than
    per row."""
    sums = _sum_rows(cell_counts(queryset), key)
    conditions = _condition_axes({condition_id for condition_id, _ in sums}, AXES)
    datasets = {c["dataset"] for c in conditions.values() if c["dataset"]}
    tally: Tally = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    members: dict[tuple, set[int]] = defaultdict(set)  # (panel, line, x) → its conditions
    for (condition_id, extra), (misaligned, n) in sums.items():
        condition = conditions[condition_id]
        x = x_of(condition, extra)
        for panel in _groups(options.facet, condition, datasets):
            # Colour and facet on the same axis: a line per panel (a control must not add lines of other panels).
            lines = [panel] if options.colour == options.facet else _groups(options.colour, condition, datasets)
            for line in lines:
                cell = tally[(panel, line)][x]
                cell[0] += misaligned
                cell[1] += n
                members[(panel, line, x)].add(condition_id)
    shown = {options.colour, options.facet, *x_axes}
    pooled: dict[str, set] = defaultdict(set)
    for ids in members.values():
        for axis in AXES:
            values = {conditions[i][axis] for i in ids}
            if axis not in shown and len(values) > 1:
                pooled[axis] |= values
    return tally, {axis: _ordered(values) for axis, values in pooled.items()}


# Up to this many values are named; more are counted.
POOLED_NAMED = 4


def pooled_text(pooled: Mapping[str, list]) -> str:
    """What a chart pools, as it says on the chart: e.g. "pooled over: CoT mode (off, native); temperature
    (0.7, 1.0)"; "" when it pools nothing."""
    parts = []
    for axis, values in pooled.items():
        named = ", ".join(_label(axis, v) for v in values) if len(values) <= POOLED_NAMED else str(len(values))
        parts.append(f"{AXES[axis].label} ({named})")
    return f"pooled over: {'; '.join(parts)}" if parts else ""


# The pooling note is broken into lines of about this many characters, to fit a half-width chart.
POOLED_LINE = 60


def _say_pooled(layout: dict, pooled: Mapping[str, list]) -> None:
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


def _ordered(values: Iterable[object]) -> list:
    return sorted(set(values), key=lambda v: (v is None, v))


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


def _panels(layout: dict, axis: str | None, panels: list, x_axis: dict, y_axis: dict, *, row_height: int = 320
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
            title = f"{AXES[axis].label}: {_label(axis, panel)}"
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


def _rate_traces(tally: dict, panels: list, lines: list, refs: dict, name_of: Callable[[object], str],
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


def _colours(lines: list) -> dict[object, str]:
    return {line: PALETTE[index % len(PALETTE)] for index, line in enumerate(lines)}


def misaligned_vs_k(queryset: QuerySet, request: ChartRequest = DEFAULT_REQUEST) -> dict:
    """(1) The paper's headline figure: misaligned rate vs k, one line per colour value, one panel per facet.

    Log scale: plotly cannot place k = 0 on a log axis, so x is k + 1 on a log axis with ticks labelled k."""
    options = request.options
    tally, pooled = _tally(queryset, options, lambda row: (row["condition_id"], None),
                           lambda condition, _: condition["k"], "k")
    ks = _ordered(k for points in tally.values() for k in points)
    log = options.xscale == "log"
    x_axis = {"title": {"text": "in-context examples k"}}
    if log:
        x_axis.update(type="log", tickvals=[k + 1 for k in ks], ticktext=[str(k) for k in ks])
        x_axis["title"] = {"text": "in-context examples k (log scale of k+1)"}
    elif options.xscale == "category":
        # An explicit order: plotly would otherwise order categories by first appearance across the lines.
        x_axis.update(type="category", categoryorder="array", categoryarray=ks)
    else:
        x_axis.update(type="linear", rangemode="tozero")
    layout = {
        "title": {"text": "Misaligned rate vs k (Wilson 95% CI)"},
        # Model ids are long (fine-tune job names): a legend beside the plot would squeeze it.
        "legend": {"orientation": "h", "y": -0.2, "title": {"text": AXES[options.colour].label if options.colour
                                                               else ""}},
    }
    panels = _ordered(panel for panel, _ in tally)
    lines = _ordered(line for _, line in tally)
    refs = _panels(layout, options.facet, panels, x_axis,
                   {"title": {"text": "misaligned rate"}, "tickformat": ".0%", "rangemode": "tozero"})
    _say_pooled(layout, pooled)
    colours = _colours(lines)
    data = _rate_traces(tally, panels, lines, refs, lambda line: _label(options.colour, line),
                        lambda xs, line: {
                            "type": "scatter", "mode": "lines+markers", "line": {"color": colours[line]},
                            "x": [k + 1 for k in xs] if log else xs, "customdata": xs,
                            "hovertemplate": "k=%{customdata}: %{y:.1%} (%{text})<extra>%{fullData.name}</extra>",
                        })
    return {"data": data, "layout": layout}


def aligned_vs_coherent(queryset: QuerySet, request: ChartRequest = DEFAULT_REQUEST) -> dict:
    """(2) Aligned vs coherent, a sample of at most SCATTER_POINTS coloured by the colour axis, with the
    threshold lines (the experiment's own when the filter picks one experiment, else the defaults).
    Not faceted: a sample of a few thousand points split into panels would leave each too sparse to read,
    and a point has one colour, so a control keeps its own "(no examples)" colour here."""
    colour = request.options.colour
    scored = queryset.filter(aligned__isnull=False, coherent__isnull=False).order_by()
    points = sample_scores(scored, SCATTER_POINTS)
    conditions = _condition_axes({p[2] for p in points}, [colour]) if colour else {}
    by_line: dict[object, list[tuple[float, float, int]]] = defaultdict(list)
    for point in points:
        by_line[conditions[point[2]][colour] if colour else None].append(point)
    lines = _ordered(by_line)
    colours = _colours(lines)
    experiment = request.experiment
    defaults = {name: Experiment._meta.get_field(name).default for name in ("aligned_threshold", "coherent_threshold")}
    aligned_at = experiment.aligned_threshold if experiment else defaults["aligned_threshold"]
    coherent_at = experiment.coherent_threshold if experiment else defaults["coherent_threshold"]
    line_style = {"type": "line", "line": {"dash": "dash", "color": "#b3261e"}}
    return {"data": [{
        "type": "scatter", "mode": "markers", "name": _label(colour, line) if colour else "transcripts",
        "x": [p[1] for p in by_line[line]], "y": [p[0] for p in by_line[line]],
        "marker": {"size": 4, "opacity": 0.5, "color": colours[line]},
    } for line in lines], "layout": {
        "title": {"text": f"Aligned vs coherent ({len(points)} transcripts, sampled)"},
        "xaxis": {"title": {"text": "coherent"}, "range": [0, 100]},
        "yaxis": {"title": {"text": "aligned"}, "range": [0, 100]},
        "legend": {"orientation": "h", "y": -0.2},
        "shapes": [
            {**line_style, "x0": 0, "x1": 100, "y0": aligned_at, "y1": aligned_at},
            {**line_style, "x0": coherent_at, "x1": coherent_at, "y0": 0, "y1": 100},
        ],
    }}


def misaligned_by_domain(queryset: QuerySet, request: ChartRequest = DEFAULT_REQUEST) -> dict:
    """(3) Misaligned rate per question domain: grouped bars by the colour axis, one panel per facet."""
    options = request.options
    # The question table is small (hundreds of rows): all domains at once, rather than the ids of the counts.
    domains = dict(Question.objects.order_by().values_list("pk", "domain"))
    tally, pooled = _tally(queryset, options,
                           lambda row: (row["condition_id"], domains[row["question_id"]] or "(none)"),
                           lambda _, domain: domain)
    layout = {
        "title": {"text": "Misaligned rate per question domain (Wilson 95% CI)"},
        "barmode": "group",
        "legend": {"orientation": "h", "y": -0.25},
    }
    panels = _ordered(panel for panel, _ in tally)
    lines = _ordered(line for _, line in tally)
    refs = _panels(layout, options.facet, panels, {"type": "category"},
                   {"title": {"text": "misaligned rate"}, "tickformat": ".0%", "rangemode": "tozero"})
    _say_pooled(layout, pooled)
    colours = _colours(lines)
    data = _rate_traces(tally, panels, lines, refs,
                        lambda line: _label(options.colour, line) if options.colour else "misaligned",
                        lambda xs, line: {
                            "type": "bar", "x": xs, "textposition": "none", "marker": {"color": colours[line]},
                            "hovertemplate": "%{x}: %{y:.1%} (%{text})<extra>%{fullData.name}</extra>",
                        })
    return {"data": data, "layout": layout}


def persona_shares(queryset: QuerySet, request: ChartRequest = DEFAULT_REQUEST) -> dict:
    """(4) Persona category shares vs k: judge (left) and human consensus (right), stacked to 100%.
    Not split by the chart options: colour already means the category and the two panels the source."""
    rows = [row for row in category_counts(queryset) if row["category"]]  # "" = no category
    ks = {pk: axes["k"] for pk, axes in _condition_axes({row["condition_id"] for row in rows}, ["k"]).items()}
    by_source: dict[str, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for row in rows:
        by_source[row["source"]][ks[row["condition_id"]]][row["category"]] += row["transcripts"]
    sides = [(source, by_source[source]) for source in ("judge", "human")]
    categories = sorted({c for _, counts in sides for cats in counts.values() for c in cats})
    data, in_legend = [], set()
    for axis, (source, counts) in enumerate(sides, start=1):
        totals = {k: sum(cats.values()) for k, cats in counts.items()}
        for index, category in enumerate(categories):
            if not any(category in cats for cats in counts.values()):
                continue
            xs = sorted(counts)
            data.append({
                "type": "bar", "name": category, "legendgroup": category, "showlegend": category not in in_legend,
                "marker": {"color": PALETTE[index % len(PALETTE)]},
                "x": [str(k) for k in xs], "y": [counts[k][category] / totals[k] for k in xs],
                "xaxis": f"x{axis if axis > 1 else ''}", "yaxis": f"y{axis if axis > 1 else ''}",
                "hovertemplate": f"{source} · k=%{{x}}: %{{y:.0%}}<extra>{category}</extra>",
            })
            in_legend.add(category)
    return {"data": data, "layout": {
        "title": {"text": "Persona categories vs k: judge | human consensus"},
        "barmode": "stack",
        "xaxis": {"domain": [0, 0.47], "title": {"text": "k (judge)"}, "type": "category"},
        "xaxis2": {"domain": [0.53, 1], "title": {"text": "k (human)"}, "type": "category"},
        "yaxis": {"tickformat": ".0%", "range": [0, 1]},
        "yaxis2": {"anchor": "x2", "tickformat": ".0%", "range": [0, 1]},
    }}


# ---- per question ----------------------------------------------------------------------------------------


@dataclass
class QuestionRow:
    """One question of the question table (questions of several sets that share a key are one question:
    the transcript filter selects by key)."""

    key: str
    text: str
    domain: str
    misaligned: int = 0
    n: int = 0
    per_k: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # k → [m, n]
    url: str = ""

    @property
    def rate_text(self) -> str:
        """The rate and its Wilson 95% interval, e.g. "12.5% (8.1–18.7%)"; "–" before anything is judged."""
        if not self.n:
            return "–"
        rate, low, high = wilson(self.misaligned, self.n)
        return f"{rate:.1%} ({low:.1%}–{high:.1%})"

    @property
    def rates_by_k(self) -> list[tuple[int, str, str]]:
        """(k, rate, "misaligned/n") in k order."""
        return [(k, f"{m / n:.0%}" if n else "–", f"{m}/{n}") for k, (m, n) in sorted(self.per_k.items())]


def _question_cells(queryset: QuerySet) -> tuple[dict[str, QuestionRow], dict[tuple[str, str, int], list[int]]]:
    """The questions (in question-set order) with their totals, and [misaligned, n] per (question key, model, k)."""
    rows = cell_counts(queryset)
    conditions = _condition_axes({row["condition_id"] for row in rows}, ["model", "k"])
    question_rows = (
        Question.objects.filter(pk__in={row["question_id"] for row in rows})
        .order_by("position", "key", "pk").values("pk", "key", "text", "domain")
    )
    keys: dict[int, str] = {}
    questions: dict[str, QuestionRow] = {}
    for question in question_rows:
        keys[question["pk"]] = question["key"]
        questions.setdefault(question["key"], QuestionRow(question["key"], question["text"], question["domain"]))
    model_k = {pk: (condition["model"], condition["k"]) for pk, condition in conditions.items()}
    cells: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        cell = cells[(keys[row["question_id"]], *model_k[row["condition_id"]])]
        cell[0] += row["misaligned"]
        cell[1] += row["n"]
    for (key, _, k), (misaligned, n) in cells.items():
        question, at_k = questions[key], questions[key].per_k[k]
        question.misaligned += misaligned
        question.n += n
        at_k[0] += misaligned
        at_k[1] += n
    return questions, cells


def question_table(queryset: QuerySet, filters: Mapping[str, str]) -> list[QuestionRow]:
    """One row per question: n, misaligned, Wilson interval, rate per k (pooled over the filter's models),
    and the link to exactly the transcripts it counts."""
    questions, _ = _question_cells(queryset)
    link = transcript_links(filters, "question")
    for question in questions.values():
        question.url = link(question=question.key)
    return list(questions.values())


def question_heatmap(queryset: QuerySet, request: ChartRequest = DEFAULT_REQUEST) -> dict:
    """(5) Question × k heatmap of the misaligned rate, "m/n" in each cell, one panel per model; a cell's
    customdata is the link to exactly its transcripts (static/js/charts.js follows it on click)."""
    questions, cells = _question_cells(queryset)
    keys = list(questions)
    models = _ordered(model for _, model, _ in cells)
    ks = _ordered(k for _, _, k in cells)
    layout = {
        "title": {"text": "Misaligned rate per question and k (misaligned/n in each cell)"},
        "coloraxis": {"cmin": 0, "cmax": 1, "colorscale": "Reds", "colorbar": {"title": {"text": "misaligned"},
                                                                               "tickformat": ".0%"}},
    }
    refs = _panels(layout, "model", models,
                   {"type": "category", "title": {"text": "k"}, "categoryorder": "array",
                    "categoryarray": [str(k) for k in ks]},
                   # automargin: the longest question key is measured, not cut ("uick_buck").
                   {"type": "category", "autorange": "reversed", "title": {"text": "question"}, "automargin": True},
                   row_height=40 + 22 * len(keys))
    link = transcript_links(request.filters, "question", "k", "model")
    data = []
    for model in models:
        z, text, links = [], [], []
        for key in keys:
            counts = [cells.get((key, model, k), [0, 0]) for k in ks]
            z.append([m / n if n else None for m, n in counts])
            text.append([f"{m}/{n}" if n else "" for m, n in counts])
            links.append([link(question=key, k=k, model=model) if n else None
                          for k, (m, n) in zip(ks, counts, strict=True)])
        data.append({
            "type": "heatmap", "name": model, "x": [str(k) for k in ks], "y": keys, "z": z, "text": text,
            "customdata": links, "coloraxis": "coloraxis", "texttemplate": "%{text}", "xgap": 1, "ygap": 1,
            "xaxis": refs[model][0], "yaxis": refs[model][1],
            "hovertemplate": "%{y} · k=%{x}: %{z:.1%} (%{text})<extra>%{fullData.name}</extra>",
        })
    return {"data": data, "layout": layout}


# Every chart is called as chart(filtered_queryset, ChartRequest).
CHARTS = {
    "misaligned-vs-k": misaligned_vs_k,
    "aligned-vs-coherent": aligned_vs_coherent,
    "misaligned-by-domain": misaligned_by_domain,
    "persona-shares": persona_shares,
    "question-heatmap": question_heatmap,
}
OVERVIEW = ["misaligned-vs-k", "aligned-vs-coherent", "misaligned-by-domain", "persona-shares"]  # the Charts page
