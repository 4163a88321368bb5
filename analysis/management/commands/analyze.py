"""`python manage.py analyze --csv FILE [--json]`: the research statistics of the pages, offline, on a tidy CSV
(one row per transcript). Documented in docs/analysis.md."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from django.core.management.base import BaseCommand, CommandError

from analysis import cells, dose_response, statistics
from analysis.cells import EXPERIMENT, ROW_COLUMNS

# Axes that name things and may be empty (no dataset, no system prompt); the others must be filled in.
MAY_BE_EMPTY = {"dataset", "system_prompt", "cot", EXPERIMENT}


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError
    return value


def _zero_or_one(text: str) -> int:
    if text not in ("0", "1"):
        raise ValueError
    return int(text)


PARSERS = {"k": (_non_negative, "a whole number ≥ 0"), "temperature": (_finite, "a number"),
           "seed": (int, "a whole number"), "misaligned": (_zero_or_one, "0 or 1")}


def read_rows(path: Path) -> pd.DataFrame:
    """The CSV as a row frame; a CommandError naming the line and column of the first bad value."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as error:
        raise CommandError(f"{path}: {error.strerror}") from error
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [column for column in ROW_COLUMNS if column not in header]
        if missing:
            raise CommandError(f"{path}, line 1: missing column(s) {', '.join(missing)}; "
                               f"expected {', '.join(ROW_COLUMNS)} (and optionally {EXPERIMENT})")
        columns = [*ROW_COLUMNS, *([EXPERIMENT] if EXPERIMENT in header else [])]
        # Kept by column, names interned: a million rows as dicts of fresh strings took 1 GB.
        data: dict[str, list[Any]] = {column: [] for column in columns}
        try:
            for record in reader:
                for column, values in data.items():
                    values.append(_parse(record.get(column), column, reader.line_num))
        except (csv.Error, UnicodeDecodeError) as error:
            raise CommandError(f"{path}, line {reader.line_num}: {error}") from error
        except ValueError as error:
            raise CommandError(f"{path}, {error}") from error
    if not data["misaligned"]:
        raise CommandError(f"{path}: no transcript rows after the header")
    return pd.DataFrame(data)


def _parse(value: str | None, column: str, line: int) -> Any:
    text = (value or "").strip()
    if column in PARSERS:
        parse, expected = PARSERS[column]
        try:
            return parse(text)
        except ValueError:
            raise ValueError(f"line {line}, column {column}: expected {expected}, got {text!r}") from None
    if not text and column not in MAY_BE_EMPTY:
        raise ValueError(f"line {line}, column {column}: empty")
    return sys.intern(text)


SHORT_BOUNDS = {dose_response.BELOW: "≤ min k", dose_response.BEYOND: "> max k"}


def _interval(interval: Any, percent: bool = True) -> str:
    if interval is None:
        return "—"

    def show(value: float | str) -> str:
        if isinstance(value, str):  # a dose-response bound outside the measured k
            return SHORT_BOUNDS[value]
        return f"{100 * value:.1f}%" if percent else f"{value:.3g}"

    return f"[{show(interval[0])}, {show(interval[1])}]"


def _shown(condition: dict[str, Any], constant: list[str]) -> str:
    return " · ".join(f"{axis}={value}" for axis, value in condition.items() if axis not in constant) or "all"


def render_text(result: dict[str, Any]) -> str:
    """The result as a readable report; axes with one value across all conditions are said once, at the top."""
    conditions = [rate["condition"] for rate in result["conditions"]]
    constant = [axis for axis in (conditions[0] if conditions else {})
                if len({str(c[axis]) for c in conditions}) == 1]
    lines = [f"{result['n']} judged transcripts, {result['misaligned']} misaligned, {result['n_questions']} questions",
             "Every condition: " + (_shown({a: conditions[0][a] for a in constant}, []) if constant else "—"),
             "", "Per condition: misaligned/n = rate, Wilson 95%, question-clustered bootstrap 95%"]
    for rate in result["conditions"]:
        value = "—" if rate["rate"] is None else f"{100 * rate['rate']:.1f}%"
        lines.append(f"  {_shown(rate['condition'], constant)}: {rate['count']}/{rate['n']} = {value}  "
                     f"Wilson {_interval(rate['wilson'])}  clustered {_interval(rate['clustered'])}  "
                     f"({rate['n_questions']} questions)")
    logistic = result["logistic"]
    lines += ["", "Logistic model: odds ratios with question-cluster-robust 95% intervals"]
    if not logistic["estimable"]:
        lines.append(f"  not estimable: {logistic['reason']}")
    for odds in logistic["odds_ratios"]:
        name = odds["term"] if odds["level"] is None else f"{odds['term']} {odds['level']} vs {odds['reference']}"
        lines.append(f"  {name}: OR {odds['odds_ratio']:.3g} {_interval(odds['interval'], percent=False)}  "
                     f"p = {odds['p_value']:.3g}")
    lines += ["", "Dose-response: k at which the fitted rate reaches each target, question-bootstrap 95%"]
    for dose in result["dose_response"]:
        lines.append(f"  {_shown(dose['group'], constant)}" + (f": {dose['reason']}" if dose["reason"] else ""))
        for target in dose["targets"]:
            at = f"k = {target['k']:.3g}" if target["k"] is not None else target["status"]
            lines.append(f"    {100 * target['target']:g}%: {at} {_interval(target['interval'], percent=False)}")
    lines += ["", "Paired comparisons: McNemar on transcripts matched by question and seed, Holm-adjusted"]
    for test in result["paired"] or []:
        a, b = test["a"], test["b"]
        change = ", ".join(f"{axis} {a[axis]} → {b[axis]}" for axis in a if a[axis] != b[axis])
        shared = {axis: value for axis, value in a.items() if b[axis] == value and axis not in constant}
        shared_text = f" ({_shown(shared, [])})" if shared else ""
        difference = "—" if test["difference"] is None else f"{100 * test['difference']:+.1f} points"
        p = "—" if test["p_value"] is None else f"p = {test['p_value']:.3g}, Holm {test['p_holm']:.3g}"
        lines.append(f"  {change}{shared_text}: {test['n_pairs']} pairs, {difference}, {p}"
                     + (" (exact)" if test["exact"] else ""))
    return "\n".join(lines) + "\n"


class Command(BaseCommand):
    help = ("Per-condition rates (Wilson and question-clustered intervals), the logistic model's odds ratios, "
            "dose-response and paired McNemar tests (Holm-adjusted) for a tidy CSV of judged transcripts.")
    # It reads a file and touches neither the database nor the URLs, so the project's checks have nothing to say.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--csv", required=True, type=Path, help="One row per transcript: "
                            + ", ".join(ROW_COLUMNS) + f" (optional {EXPERIMENT}).")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON (docs/analysis.md).")
        parser.add_argument("--n-boot", type=int, default=2000, help="Bootstrap replicates (default 2000).")
        parser.add_argument("--seed", type=int, default=0, help="Bootstrap random seed (default 0).")

    def handle(self, *args, **options):
        rows = read_rows(options["csv"])
        try:
            result = statistics.analyze(cells.cells_from_rows(rows), rows,
                                        n_boot=options["n_boot"], seed=options["seed"])
        except ValueError as error:  # e.g. two transcripts of one condition with the same question and seed
            raise CommandError(str(error)) from error
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2, allow_nan=False, ensure_ascii=False))
        else:
            self.stdout.write(render_text(result))
