"""The condition axes, defined once: what makes one condition of an experiment differ from another.

Each axis has one name everywhere (the transcript filter's key, the charts' colour and facet options, the
statistics' frame columns, the links between them), the Condition field that holds its value and the label
pages show. Plain data, no Django: `analysis` reads the names from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


def axis_values(condition: Any) -> dict[str, Any]:
    """A condition's value on each axis, by axis name."""
    return {axis.name: getattr(condition, axis.field) for axis in AXES}
