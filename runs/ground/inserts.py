"""Many rows of one model in one ``INSERT ... VALUES``, each value a
parameter of its own.

Not ``bulk_create``: on PostgreSQL, Django sends a batch as UNNEST of one
array per column, and psycopg quotes each text element of an array in
Python, one regular-expression substitution per quote character. The hot
rows (events, steps) are mostly JSON, that is mostly quote characters: for
a run's start, the quoting cost more than the rest of its append. Each
value as a parameter of its own is escaped by the driver, in C.
"""

from collections.abc import Sequence
from typing import Any

from django.db import connection, models


def insert_values(objs: Sequence[models.Model]) -> None:
    """Insert ``objs`` (all of one model, with an auto id) in one statement
    (in batches where the database limits a statement's parameters, as
    ``bulk_create`` does) and give each its id."""
    if not objs:
        return
    meta = objs[0]._meta
    fields = [f for f in meta.concrete_fields if f is not meta.pk]
    size = max(1, connection.ops.bulk_batch_size(fields, objs))
    for start in range(0, len(objs), size):
        _insert_batch(objs[start : start + size], fields)


def _insert_batch(objs: Sequence[models.Model], fields: list) -> None:
    meta = objs[0]._meta
    params: list[Any] = []
    for obj in objs:
        params += [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    ops = connection.ops
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    table = ops.quote_name(meta.db_table)
    columns = ", ".join(ops.quote_name(f.column) for f in fields)
    values = ", ".join([row] * len(objs))
    returning = ops.quote_name(meta.pk.column)
    # Names from the model and placeholders only: every value is a parameter.
    sql = f"INSERT INTO {table} ({columns}) VALUES {values} RETURNING {returning}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = [found for (found,) in cursor.fetchall()]
    # Rows come back in the order of the VALUES list (bulk_create relies on
    # the same), so each object gets its own id.
    for obj, found in zip(objs, ids, strict=True):
        obj.pk = found
        obj._state.adding = False
        obj._state.db = connection.alias
