"""What a chart is drawn for, besides the filtered transcripts: the options in its URL (colour and facet axes, k
scale), the experiment whose thresholds apply, and the page's filter that its links to transcripts carry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.urls import reverse

from analysis.axes import AXES as CONDITION_AXES
from analysis.axes import Axis
from transcripts.models import Experiment

# The axes a chart can be coloured or faceted by: the condition axes and the experiment. Each key is also the
# transcript filter of that axis (except `experiment`, which the filter takes by id), so a link from a chart
# narrows the list to the same group.
AXES = {axis.name: axis for axis in (*CONDITION_AXES, Axis("experiment", "experiment__name", "Experiment"))}
NO_AXIS = "none"
XSCALES = {"category": "k evenly spaced", "linear": "k linear", "log": "k log scale (k+1)"}
OPTION_NAMES = ("colour", "facet", "xscale")


@dataclass(frozen=True)
class ChartOptions:
    """How the charts split and scale; None = not split."""

    colour: str | None = "model"
    facet: str | None = "dataset"
    xscale: str = "category"


DEFAULT_OPTIONS = ChartOptions()


class InvalidOptions(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


def chart_options(params: Mapping[str, str]) -> ChartOptions:
    """The options in a querystring; a missing or empty one takes the default, an unknown one is an error
    (a typo must not quietly draw the default figure)."""
    errors = {}
    chosen = {}
    for name, allowed in (("colour", [*AXES, NO_AXIS]), ("facet", [*AXES, NO_AXIS]), ("xscale", list(XSCALES))):
        value = params.get(name) or getattr(DEFAULT_OPTIONS, name) or NO_AXIS
        if value not in allowed:
            errors[name] = f"{value!r} is not one of {', '.join(allowed)}"
        chosen[name] = None if value == NO_AXIS else value
    if errors:
        raise InvalidOptions(errors)
    return ChartOptions(**chosen)


@dataclass(frozen=True)
class ChartRequest:
    """What a chart is drawn for, besides the filtered transcripts."""

    options: ChartOptions = DEFAULT_OPTIONS
    experiment: Experiment | None = None  # set when the filter picks one experiment (its thresholds apply)
    filters: Mapping[str, str] = field(default_factory=dict)  # the page's filter, carried into transcript links


DEFAULT_REQUEST = ChartRequest()


def transcript_links(filters: Mapping[str, str], *narrowed: str) -> Callable[..., str]:
    """A maker of links to the transcript list of exactly the transcripts a rate counts: the page's filter
    narrowed by the `narrowed` keys, e.g. `transcript_links(filters, "question")(question="quick_buck")`.
    The common part is encoded once: the heatmap makes a link per cell."""
    kept = urlencode({key: value for key, value in filters.items() if key not in (*narrowed, "counted")})
    prefix = f"{reverse('transcript-list')}?{kept}{'&' if kept else ''}counted=true&"
    return lambda **values: prefix + urlencode(values)
