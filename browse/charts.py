"""The charts as plotly figure dicts, each computed from a filtered transcript queryset: misaligned rate vs k, aligned
vs coherent, rate per question domain, persona shares vs k and the question × k heatmap (CHARTS; the Charts page
shows OVERVIEW).

Every chart that can be split is coloured by one axis and faceted (one panel each) by another, chosen in the
URL (`colour=system_prompt&facet=dataset`, browse.chart_options); the defaults are the paper's figure: one line
per model, one panel per dataset. What a point counts is browse.chart_counts (verdict counts mapped to the
condition axes of analysis.axes); how it is drawn (panels, Wilson error bars, colours, the pooling note) is
browse.chart_layout.
"""

from __future__ import annotations

from collections import defaultdict

from django.db.models import QuerySet

from judging.palette import PALETTE
from transcripts.aggregates import category_counts
from transcripts.models import Experiment, Question
from transcripts.sampling import SCATTER_POINTS, sample_scores

from .chart_counts import condition_axes, count_points, ordered, question_cells
from .chart_layout import label, line_colours, panel_grid, rate_traces, say_pooled
from .chart_options import AXES, DEFAULT_REQUEST, ChartRequest, transcript_links


def misaligned_vs_k(queryset: QuerySet, request: ChartRequest = DEFAULT_REQUEST) -> dict:
    """(1) The paper's headline figure: misaligned rate vs k, one line per colour value, one panel per facet.

    Log scale: plotly cannot place k = 0 on a log axis, so x is k + 1 on a log axis with ticks labelled k."""
    options = request.options
    tally, pooled = count_points(queryset, options, lambda row: (row["condition_id"], None),
                           lambda condition, _: condition["k"], "k")
    ks = ordered(k for points in tally.values() for k in points)
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
    panels = ordered(panel for panel, _ in tally)
    lines = ordered(line for _, line in tally)
    refs = panel_grid(layout, options.facet, panels, x_axis,
                   {"title": {"text": "misaligned rate"}, "tickformat": ".0%", "rangemode": "tozero"})
    say_pooled(layout, pooled)
    colours = line_colours(lines)
    data = rate_traces(tally, panels, lines, refs, lambda line: label(options.colour, line),
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
    conditions = condition_axes({p[2] for p in points}, [colour]) if colour else {}
    by_line: dict[object, list[tuple[float, float, int]]] = defaultdict(list)
    for point in points:
        by_line[conditions[point[2]][colour] if colour else None].append(point)
    lines = ordered(by_line)
    colours = line_colours(lines)
    experiment = request.experiment
    defaults = {name: Experiment._meta.get_field(name).default for name in ("aligned_threshold", "coherent_threshold")}
    aligned_at = experiment.aligned_threshold if experiment else defaults["aligned_threshold"]
    coherent_at = experiment.coherent_threshold if experiment else defaults["coherent_threshold"]
    line_style = {"type": "line", "line": {"dash": "dash", "color": "#b3261e"}}
    return {"data": [{
        "type": "scatter", "mode": "markers", "name": label(colour, line) if colour else "transcripts",
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
    tally, pooled = count_points(queryset, options,
                           lambda row: (row["condition_id"], domains[row["question_id"]] or "(none)"),
                           lambda _, domain: domain)
    layout = {
        "title": {"text": "Misaligned rate per question domain (Wilson 95% CI)"},
        "barmode": "group",
        "legend": {"orientation": "h", "y": -0.25},
    }
    panels = ordered(panel for panel, _ in tally)
    lines = ordered(line for _, line in tally)
    refs = panel_grid(layout, options.facet, panels, {"type": "category"},
                   {"title": {"text": "misaligned rate"}, "tickformat": ".0%", "rangemode": "tozero"})
    say_pooled(layout, pooled)
    colours = line_colours(lines)
    data = rate_traces(tally, panels, lines, refs,
                        lambda line: label(options.colour, line) if options.colour else "misaligned",
                        lambda xs, line: {
                            "type": "bar", "x": xs, "textposition": "none", "marker": {"color": colours[line]},
                            "hovertemplate": "%{x}: %{y:.1%} (%{text})<extra>%{fullData.name}</extra>",
                        })
    return {"data": data, "layout": layout}


def persona_shares(queryset: QuerySet, request: ChartRequest = DEFAULT_REQUEST) -> dict:
    """(4) Persona category shares vs k: judge (left) and human consensus (right), stacked to 100%.
    Not split by the chart options: colour already means the category and the two panels the source."""
    rows = [row for row in category_counts(queryset) if row["category"]]  # "" = no category
    ks = {pk: axes["k"] for pk, axes in condition_axes({row["condition_id"] for row in rows}, ["k"]).items()}
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


def question_heatmap(queryset: QuerySet, request: ChartRequest = DEFAULT_REQUEST) -> dict:
    """(5) Question × k heatmap of the misaligned rate, "m/n" in each cell, one panel per model; a cell's
    customdata is the link to exactly its transcripts (static/js/charts.js follows it on click)."""
    questions, cells = question_cells(queryset)
    keys = list(questions)
    models = ordered(model for _, model, _ in cells)
    ks = ordered(k for _, _, k in cells)
    layout = {
        "title": {"text": "Misaligned rate per question and k (misaligned/n in each cell)"},
        "coloraxis": {"cmin": 0, "cmax": 1, "colorscale": "Reds", "colorbar": {"title": {"text": "misaligned"},
                                                                               "tickformat": ".0%"}},
    }
    refs = panel_grid(layout, "model", models,
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
