"""Writing several rows' own values in one round trip."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Field, Model


def rows_update(objects: Sequence[Model], fields: Sequence[str]) -> None:
    """UPDATE each object's row with its own values of `fields`, as one executemany: one
    round trip, where Django's bulk_update builds a CASE expression per field and object
    (3 ms of Python per row, measured on a batch of eight images). Values are prepared by
    the fields themselves (file names, datetimes, booleans), as `save()` would."""
    if not objects:
        return
    meta = type(objects[0])._meta
    columns: list[Field] = []
    for name in fields:
        field = meta.get_field(name)
        assert isinstance(field, Field) and field.column, f"{name} is not a column"
        columns.append(field)
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(str(field.column))} = %s" for field in columns)
    key = quote(str(meta.pk.column)) if meta.pk else "id"
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {key} = %s"
    rows = [
        [field.get_db_prep_save(getattr(obj, field.attname), connection) for field in columns]
        + [obj.pk]
        for obj in objects
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
