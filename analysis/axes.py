"""The condition axes, defined once: what makes one condition of an experiment differ from another.

Each axis has one name everywhere (the statistics' frame columns, the transcript filter's key, the charts' colour
and facet options, the links between them), the Condition field that holds its value (transcripts.models) and the
label pages show. Plain data with no imports, so the pure statistics (analysis.statistics) and every app can read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Axis:
    name: str
    field: str  # the Condition field holding the value
    label: str


AXES = (
    Axis("model", "model_name", "Model"),
    Axis("dataset", "dataset_name", "Dataset"),
    Axis("k", "k", "k (examples)"),
    Axis("cot", "cot_mode", "CoT mode"),
    Axis("system_prompt", "system_prompt_name", "System prompt"),
    Axis("temperature", "temperature", "Temperature"),
)
AXIS = {axis.name: axis for axis in AXES}
AXIS_NAMES = tuple(axis.name for axis in AXES)
AXIS_FIELDS = tuple(axis.field for axis in AXES)

