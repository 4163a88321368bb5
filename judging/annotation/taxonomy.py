"""Persona taxonomies are data with versions: editing one creates the next version, so labels made under
an older version keep pointing at the categories they were made with."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from ..models import PersonaCategory, Taxonomy

CATEGORY_FIELDS = ("key", "name", "description", "example", "shortcut")


def latest_versions() -> list[Taxonomy]:
    """The newest version of every taxonomy name."""
    newest = Taxonomy.objects.values("name").annotate(v=Max("version"))
    wanted = {(row["name"], row["v"]) for row in newest}
    return [t for t in Taxonomy.objects.order_by("name") if (t.name, t.version) in wanted]


def category_rows(taxonomy: Taxonomy) -> list[dict]:
    return [{f: getattr(c, f) for f in CATEGORY_FIELDS} for c in taxonomy.categories.order_by("position")]


@transaction.atomic
def create_version(*, base: Taxonomy, categories: list[dict], description: str) -> Taxonomy:
    """A new version of `base`'s taxonomy with these categories (dicts with CATEGORY_FIELDS), in order."""
    version = (Taxonomy.objects.filter(name=base.name).aggregate(v=Max("version"))["v"] or 0) + 1
    taxonomy = Taxonomy.objects.create(name=base.name, version=version, description=description)
    PersonaCategory.objects.bulk_create(
        PersonaCategory(taxonomy=taxonomy, position=position, **{f: row.get(f, "") for f in CATEGORY_FIELDS})
        for position, row in enumerate(categories)
    )
    return taxonomy


def category_names(taxonomy: Taxonomy | None) -> dict[str, str]:
    """Every category key of the taxonomy to its name, for pages a person reads (the `category_name` filter)."""
    return dict(taxonomy.categories.values_list("key", "name")) if taxonomy is not None else {}
