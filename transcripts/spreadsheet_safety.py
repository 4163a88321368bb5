"""CSV injection (OWASP): spreadsheets run a cell that starts with `=`, `+`, `-`, `@`, tab or CR as a formula.
Every CSV this app writes (the transcript export, the labels CSV) puts a single quote before such a cell:
`neutralise` is the rule for values formatted in Python, `Neutralised` the same rule in SQL for COPY, and
`restore` undoes it when an exported file comes back."""

from django.db.models import Func, TextField

# OWASP "CSV injection": cells starting with one of these run as formulas in spreadsheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """A text cell that a spreadsheet would run as a formula, with a leading single quote; anything else as is."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def restore(cell: str) -> str:
    """A cell of an exported CSV as it was before `neutralise` (for importing what was exported)."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_PREFIXES):
        return cell[1:]
    return cell


class Neutralised(Func):
    """`neutralise` in PostgreSQL, for the rows COPY writes itself."""

    output_field = TextField()
    # Comparing the first character's code point is the cheapest test (no collation, no substring).
    _CODES = ", ".join(str(ord(c)) for c in FORMULA_PREFIXES)

    def as_sql(self, compiler, connection, **extra):
        cell, params = compiler.compile(self.source_expressions[0])
        # The cell appears three times, so do its parameters.
        sql = f"CASE WHEN ascii({cell}) IN ({self._CODES}) THEN '''' || {cell} ELSE {cell} END"
        return sql, (*params,) * 3
