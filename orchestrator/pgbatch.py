"""Batched writes and row filters that cost the ORM more than the work: on PostgreSQL
one statement (or one parameter) over arrays (`unnest`), instead of a `CASE WHEN` per
row or an `OR` per row that Django builds, compiles and binds row by row (and
PostgreSQL parses). SQLite, and a batch of one row, take the ORM path, which says the
same thing.

The arrays are typed with each field's own column type, so a value is converted as
the ORM would convert it (`get_db_prep_save`); JSON goes as text cast to `jsonb`. An
array of integers, strings, aware datetimes and NULLs is sent as its text literal
(`{1,2}`, `{"a",NULL}`), which costs a seventh of psycopg's dumping a list element by
element (7 us against 47 for 50 ids); any other array goes as the list.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import connection, models
from django.db.models import F, Q
from django.db.models.expressions import Expression
from django.db.models.functions import Coalesce

M = TypeVar("M", bound=models.Model)


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


# Fields whose preparation gives back a value of this exact type unchanged (no custom
# `get_prep_value`: not, say, an encrypted text field), so a batch of such values is
# sent as it is instead of through `get_db_prep_save` value by value.
_AS_IS: dict[type[models.Field[Any, Any]], type] = {
    models.AutoField: int,
    models.BigAutoField: int,
    models.IntegerField: int,
    models.BigIntegerField: int,
    models.SmallIntegerField: int,
    models.PositiveIntegerField: int,
    models.PositiveSmallIntegerField: int,
    models.CharField: str,
    models.TextField: str,
}


def array(values: list[Any]) -> Any:
    """An array parameter for `values`: its text literal when every value is an int,
    a str, an aware datetime or None (what PostgreSQL reads for a `::type[]` cast),
    else the list."""
    parts = []
    for value in values:
        kind = type(value)
        if kind is int:
            parts.append(str(value))
        elif kind is str:
            parts.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif value is None:
            parts.append("NULL")
        elif kind is dt.datetime and value.utcoffset() is not None:
            parts.append('"' + value.isoformat() + '"')
        else:
            return values
    return "{" + ",".join(parts) + "}"


def _array_of(field: models.Field[Any, Any], values: list[Any]) -> tuple[str, Any]:
    """The SQL cast of an array parameter for `field`, and its values prepared."""
    if isinstance(field, models.JSONField):
        encoder = field.encoder
        return "text[]", array([None if v is None else json.dumps(v, cls=encoder) for v in values])
    db_type = field.db_type(connection)  # a foreign key's is its target's id type
    return f"{db_type}[]", array(_prepared(field, values))


def _prepared(field: models.Field[Any, Any], values: list[Any]) -> list[Any]:
    target = field.target_field if isinstance(field, models.ForeignKey) else field
    kind = _AS_IS.get(type(target))
    if kind is not None and all(type(v) is kind for v in values):
        return values
    return [field.get_db_prep_save(v, connection) for v in values]


class _InArrays(Expression):
    """`(<columns>) IN (SELECT * FROM unnest(<arrays>))` as a filter. The columns are
    resolved like `F()` references, so the filter also works in joins and subqueries
    (where Django renames the table)."""

    conditional = True
    output_field = models.BooleanField()

    def __init__(self, fields: Sequence[str], arrays: list[tuple[str, list[Any]]]) -> None:
        super().__init__(output_field=models.BooleanField())
        self.refs: list[Any] = [F(name) for name in fields]
        self.arrays = arrays

    def get_source_expressions(self) -> list[Any]:
        return self.refs

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        self.refs = list(exprs)

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        columns, params = [], []
        for ref in self.refs:
            sql, ref_params = compiler.compile(ref)
            columns.append(sql)
            params.extend(ref_params)
        casts = ", ".join(f"%s::{cast}" for cast, _ in self.arrays)
        sql = f"({', '.join(columns)}) IN (SELECT * FROM unnest({casts}))"
        return sql, [*params, *(values for _, values in self.arrays)]


class _ByPk(Expression):
    """`(<values>)[array_position(<pks>, <pk column>)]`: the value given for each row of
    an UPDATE by its primary key, two array parameters whatever the number of rows
    (`by_pk`)."""

    def __init__(self, pks: tuple[str, Any], values: tuple[str, Any], output_field: Any) -> None:
        super().__init__(output_field=output_field)
        self.ref: Any = F("pk")
        self.pks, self.values = pks, values

    def get_source_expressions(self) -> list[Any]:
        return [self.ref]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        (self.ref,) = exprs

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.ref)
        (pk_cast, pks), (cast, values) = self.pks, self.values
        sql = f"(%s::{cast})[array_position(%s::{pk_cast}, {column})]"
        return sql, [values, pks, *params]


def by_pk(
    model: type[models.Model], values: dict[Any, Any], output_field: models.Field[Any, Any]
) -> Any:
    """A per-row value for an UPDATE of the rows whose primary keys are `values`' keys
    (NULL for any other row): on PostgreSQL one array lookup with two parameters, where
    `Case(When(pk=…))` is resolved, compiled and bound row by row; elsewhere that Case."""
    if not on_postgresql():
        return models.Case(
            *(models.When(pk=pk, then=models.Value(v)) for pk, v in values.items()),
            output_field=output_field,
        )
    pks = _array_of(_field(model, "pk"), list(values))
    return _ByPk(pks, _match_type(output_field, list(values.values())), output_field)


def count_by_pk(model: type[models.Model], values: dict[Any, int]) -> Any:
    """An integer per row for an UPDATE of the rows whose primary keys are `values`'
    keys, 0 for any other: a constant when every value is the same (one row, say),
    else `by_pk`."""
    distinct = set(values.values())
    if len(distinct) == 1:
        return models.Value(distinct.pop())
    return Coalesce(by_pk(model, values, models.IntegerField()), models.Value(0))


def _match_type(field: models.Field[Any, Any], values: list[Any]) -> tuple[str, list[Any]]:
    """`_array_of`, with text for strings: a cast to varchar(n) would truncate a longer
    value, which could then match a row it does not equal."""
    cast, prepared = _array_of(field, values)
    if cast.startswith(("varchar", "character varying")):
        cast = "text[]"
    return cast, prepared


def rows_in(
    model: type[models.Model], fields: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> Any:
    """A filter: the row's `fields` equal one of `rows` (tuples in `fields` order).
    On PostgreSQL `(a, b) IN (SELECT * FROM unnest(<array a>, <array b>))`, one
    parameter per field whatever the number of rows; elsewhere, for one row, or when
    a value is None (SQL's IN never matches NULL, the ORM's `=None` is IS NULL), an OR
    of `Q`s."""
    if not rows:
        return Q(pk__in=[])
    if not on_postgresql() or len(rows) == 1 or any(v is None for row in rows for v in row):
        cond = Q(pk__in=[])
        for row in rows:
            cond |= Q(**dict(zip(fields, row, strict=True)))
        return cond
    columns = [_field(model, name) for name in fields]
    return _InArrays(
        fields, [_match_type(field, [row[i] for row in rows]) for i, field in enumerate(columns)]
    )


def ids_in(model: type[models.Model], ids: Sequence[Any]) -> Any:
    """A filter: the row's id is one of `ids` (one array parameter on PostgreSQL)."""
    if not on_postgresql() or len(ids) < 2:
        return Q(pk__in=list(ids))
    return rows_in(model, ["pk"], [(pk,) for pk in ids])


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    """The concrete field `name` of `model` ("pk" for its primary key)."""
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    assert isinstance(field, models.Field), f"{model.__name__}.{name} is not a column"
    return field


def _column(field: models.Field[Any, Any]) -> str:
    return connection.ops.quote_name(str(field.column))


def _value_sql(field: models.Field[Any, Any], ref: str) -> str:
    return f"{ref}::jsonb" if isinstance(field, models.JSONField) else ref


def bulk_update(model: type[M], objs: Sequence[M], fields: Sequence[str]) -> int:
    """`Model.objects.bulk_update(objs, fields)` in one `UPDATE … FROM unnest(…)` on
    PostgreSQL. The caller holds the rows locked (in id order) if it needs to."""
    if not objs:
        return 0
    if not on_postgresql() or len(objs) == 1:
        return model._default_manager.bulk_update(objs, list(fields))
    pk = _field(model, "pk")
    columns = [_field(model, name) for name in fields]
    casts: list[str] = []
    params: list[Any] = []
    cast, values = _array_of(pk, [obj.pk for obj in objs])
    casts.append(f"%s::{cast}")
    params.append(values)
    for field in columns:
        cast, values = _array_of(field, [getattr(obj, field.attname) for obj in objs])
        casts.append(f"%s::{cast}")
        params.append(values)
    aliases = ["k", *(f"c{i}" for i in range(len(columns)))]
    sets = ", ".join(
        f"{_column(field)} = {_value_sql(field, 'v.' + alias)}"
        for field, alias in zip(columns, aliases[1:], strict=True)
    )
    sql = (
        f"UPDATE {connection.ops.quote_name(model._meta.db_table)} AS t SET {sets} "
        f"FROM unnest({', '.join(casts)}) AS v({', '.join(aliases)}) "
        f"WHERE t.{_column(pk)} = v.k"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def raw_rows(queryset: models.QuerySet[Any]) -> list[tuple[Any, ...]]:
    """The rows of a `values_list` queryset as the database driver gives them, without
    the ORM's conversion of each value (a few µs a row on the thousands of rows a busy
    tick reads). For integer and text columns, which every backend returns as Python
    does; a JSON column comes back as its text on PostgreSQL and SQLite."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def insert(model: type[models.Model], rows: Sequence[dict[str, Any]]) -> None:
    """`bulk_create` of `rows` (field name or attname -> the value as stored: ids for
    foreign keys; a field not given takes its default) without building a model
    instance per row: on PostgreSQL one `INSERT … SELECT … FROM unnest(…)`, an array
    per column. Values are checked by the columns themselves (text arrays, never
    `varchar(n)` ones, so a value too long raises as `bulk_create` does)."""
    if not rows:
        return
    pk = model._meta.pk
    if (
        not on_postgresql()
        or len(rows) == 1
        or any(_db_default(f) for f in model._meta.concrete_fields)
    ):
        attname = {f.name: f.attname for f in model._meta.concrete_fields}
        model._default_manager.bulk_create(
            [model(**{attname.get(k, k): v for k, v in row.items()}) for row in rows]
        )
        return
    fields = [
        f for f in model._meta.concrete_fields if not (f is pk and isinstance(f, models.AutoField))
    ]
    casts: list[str] = []
    params: list[Any] = []
    for field in fields:
        cast, prepared = _match_type(field, _column_values(field, rows))
        casts.append(f"%s::{cast}")
        params.append(prepared)
    aliases = [f"c{i}" for i in range(len(fields))]
    sql = "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS v({})".format(
        connection.ops.quote_name(model._meta.db_table),
        ", ".join(_column(f) for f in fields),
        ", ".join(_value_sql(f, "v." + a) for f, a in zip(fields, aliases, strict=True)),
        ", ".join(casts),
        ", ".join(aliases),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


_Unset: Any = object()


def _column_values(field: models.Field[Any, Any], rows: Sequence[dict[str, Any]]) -> list[Any]:
    """`field`'s value in each row (by attname or name), its default where not given."""
    default = _Unset
    values = []
    for row in rows:
        value = row.get(field.attname, row.get(field.name, _Unset))
        if value is _Unset:
            if default is _Unset:
                default = field.get_default()
            value = default
        values.append(value)
    return values


def _db_default(field: Any) -> bool:
    """Whether the database computes the field's default (`db_default`): such a model
    takes `bulk_create`, which leaves the column out."""
    return getattr(field, "db_default", models.NOT_PROVIDED) is not models.NOT_PROVIDED


def execute_unnest(
    sql: str, arrays: dict[str, tuple[str, list[Any]]], params: dict[str, Any] | None = None
) -> Any:
    """Run `sql`, whose `{rows}` is replaced by `unnest(<arrays>) AS v(<names>)`; each
    entry of `arrays` is name -> (SQL element type, values). Other parameters are named
    (`%(name)s`) and given in `params`. Returns the cursor's rows when the statement
    returns any, else its rowcount."""
    names = list(arrays)
    rows = "unnest({}) AS v({})".format(
        ", ".join(f"%(_{n})s::{arrays[n][0]}[]" for n in names), ", ".join(names)
    )
    bound = {**(params or {}), **{f"_{n}": array(arrays[n][1]) for n in names}}
    with connection.cursor() as cursor:
        cursor.execute(sql.replace("{rows}", rows), bound)
        if cursor.description is not None:
            return cursor.fetchall()
        return int(cursor.rowcount)


__all__ = [
    "array",
    "bulk_update",
    "by_pk",
    "count_by_pk",
    "execute_unnest",
    "ids_in",
    "insert",
    "on_postgresql",
    "raw_rows",
    "rows_in",
]
