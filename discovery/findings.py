"""From a finding to work: a cluster becomes a category in a new version of a taxonomy (labels made under the
old version keep pointing at theirs). A queue of its transcripts and an export are the transcript filter's
(`cluster=run:label`): browse's "queue these" and exports take it like any other filter."""

from __future__ import annotations

from django.utils.text import slugify

from judging.annotation.taxonomy import category_rows, create_version
from judging.models import Taxonomy
from transcripts.models import Transcript

from .models import Cluster


def category_from_cluster(cluster: Cluster, base: Taxonomy, *, name: str = "", description: str = "") -> Taxonomy:
    """The next version of `base`'s taxonomy: its categories and one more for the cluster (named by the
    researcher, or by the cluster's LLM name), its example one of the cluster's sampled reasonings."""
    run = cluster.run
    name = (name or cluster.name or f"Cluster {cluster.label} of run {run.pk}").strip()[:100]
    rows = category_rows(base)
    taken = {row["key"] for row in rows}
    key = slugify(name)[:40] or f"cluster-{run.pk}-{cluster.label}"
    stem, n = key, 2
    while key in taken:
        key, n = f"{stem[:44]}-{n}", n + 1
    example = Transcript.objects.filter(pk__in=cluster.sample[:1]).values_list("reasoning", flat=True).first() or ""
    rows.append({"key": key, "name": name, "description": (description or cluster.description)[:2000],
                 "example": example[:1000], "shortcut": ""})
    return create_version(base=base, categories=rows,
                          description=f"Adds “{name}” from cluster {cluster.label} of cluster run {run.pk}.")
