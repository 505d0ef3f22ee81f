"""The scoring path's hot statements on the DBAPI cursor of a SQLAlchemy connection.

SQLAlchemy's per-execution work (compiled-cache lookup, parameter construction, the execution
context and result objects) cost about 20-40 us a statement, several times what SQLite itself
takes for a one-row insert. A `DriverInsert` is rendered once for the engine's dialect (the very
SQL string SQLAlchemy would send, casts included) and run on the connection's own DBAPI cursor,
so it is part of the caller's transaction (`engine.begin()`: same commit, same rollback). Values
go through the columns' own bind processors, so the stored values are what
`conn.execute(table.insert(), rows)` stores (JSON on SQLite is encoded by orjson instead of the
standard library's json: the same document, 5-10x faster to write); driver errors are raised as
SQLAlchemy's (`IntegrityError`, `OperationalError`: what the callers catch), a dropped
connection invalidated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import JSON, Column, Table, bindparam, insert, select
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import Null


@contextmanager
def cursor(conn: Connection) -> Iterator[Any]:
    """The DBAPI cursor of `conn` (inside its transaction); driver errors as SQLAlchemy's."""
    dbapi = conn.dialect.loaded_dbapi
    proxied = conn.connection
    cur = proxied.cursor()
    try:
        yield cur
    except dbapi.Error as err:
        gone = conn.dialect.is_disconnect(err, proxied.dbapi_connection, cur)
        wrapped = DBAPIError.instance(
            None, None, err, dbapi.Error, connection_invalidated=gone, dialect=conn.dialect
        )
        if gone:
            conn.invalidate(wrapped)
        raise wrapped from err
    finally:
        with suppress(dbapi.Error):  # the connection is gone already: nothing left to close
            cur.close()


def run(conn: Connection, cur: Any, sql: str, params: Any, *, many: bool) -> None:
    """Execute on the cursor, with the engine's cursor events around it as SQLAlchemy fires
    them (instrumentation and fault injection see these statements too; no context object)."""
    dispatch = conn.dispatch
    for fn in dispatch.before_cursor_execute:
        sql, params = fn(conn, cur, sql, params, None, many)
    if many:
        cur.executemany(sql, params)
    else:
        cur.execute(sql, params)
    for fn in dispatch.after_cursor_execute:
        fn(conn, cur, sql, params, None, many)


Processor = Callable[[Any], Any] | None

_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def json_text(value: Any) -> str:
    """A JSON document as text: orjson, or the standard library for what orjson refuses (an
    int past 64 bits, an unknown type), which then raises as it always did."""
    try:
        return orjson.dumps(value, option=_ORJSON).decode()
    except TypeError:
        return json.dumps(value)


def _json_processor(column: Column[Any], dialect: Dialect) -> Processor | None:
    """SQLAlchemy's JSON bind processor with `json_text` as the serializer, where the column is
    JSON stored as text (SQLite); None elsewhere (its own processor stays)."""
    impl = column.type.dialect_impl(dialect)
    if dialect.name != "sqlite" or not isinstance(impl, JSON):
        return None
    if impl._str_impl.bind_processor(dialect) is not None:  # text with a processor of its own
        return None
    none_as_null = impl.none_as_null

    def process(value: Any) -> Any:
        if value is JSON.NULL:
            value = None
        elif isinstance(value, Null) or (value is None and none_as_null):
            return None
        return json_text(value)

    return process


class DriverInsert:
    """INSERT rows of one table on the DBAPI cursor; the SQL rendered once per column set.

    A value many rows share (the transaction's time) or that two tables store (a response)
    can go through its column's bind processor once (`process`) and be passed as processed:
    `execute(..., ready={column, ...})` sends those columns' values as they are. The bytes
    stored are the same: it is the same processor, called fewer times."""

    def __init__(self, table: Table, dialect: Dialect) -> None:
        self.table = table
        self.dialect = dialect
        Rendered = tuple[str, tuple[tuple[str, Processor], ...], bool]
        self._rendered: dict[tuple[tuple[str, ...], frozenset[str]], Rendered] = {}
        self._procs: dict[str, Processor] = {}

    def processor(self, column: str) -> Processor:
        """The column's bind processor for this dialect (None: the value goes as it is)."""
        if column not in self._procs:
            col = self.table.c[column]
            fast = _json_processor(col, self.dialect)
            impl = col.type.dialect_impl(self.dialect)
            self._procs[column] = fast if fast is not None else impl.bind_processor(self.dialect)
        return self._procs[column]

    def process(self, column: str, value: Any) -> Any:
        """`value` as the column's bind processor hands it to the driver (see `ready`)."""
        proc = self.processor(column)
        return value if proc is None else proc(value)

    def _render(
        self, keys: tuple[str, ...], ready: frozenset[str]
    ) -> tuple[str, tuple[tuple[str, Processor], ...], bool]:
        # as for an executemany: no RETURNING of generated keys nobody reads
        compiled = insert(self.table).compile(
            dialect=self.dialect, column_keys=list(keys), for_executemany=True
        )
        order = compiled.positiontup if compiled.positional else list(compiled.binds)
        if order is None or set(order) != set(keys):
            raise ValueError(f"{self.table.name}: cannot bind {keys} as {order}")
        procs = tuple((name, None if name in ready else self.processor(name)) for name in order)
        return compiled.string, procs, compiled.positional

    def execute(
        self,
        conn: Connection,
        rows: Sequence[Mapping[str, Any]],
        ready: frozenset[str] = frozenset(),
    ) -> None:
        """Insert `rows` (every row with the same keys) in `conn`'s transaction. `ready`: the
        columns whose values are already processed (`process`)."""
        if not rows:
            return
        keys = tuple(rows[0])
        rendered = self._rendered.get((keys, ready))
        if rendered is None:
            rendered = self._rendered[(keys, ready)] = self._render(keys, ready)
        sql, procs, positional = rendered
        params: list[Any]
        if positional:
            params = _positional(procs, rows)
        else:
            params = [{k: (r[k] if p is None else p(r[k])) for k, p in procs} for r in rows]
        with cursor(conn) as cur:
            if len(params) == 1:
                run(conn, cur, sql, params[0], many=False)
            else:
                run(conn, cur, sql, params, many=True)

    def insert_one(self, conn: Connection, row: Mapping[str, Any]) -> int:
        """Insert one row and return its generated integer key (SQLite's rowid: a table with an
        INTEGER PRIMARY KEY). Only on SQLite: other databases need RETURNING (use SQLAlchemy)."""
        if self.dialect.name != "sqlite":
            raise NotImplementedError("insert_one needs SQLite's lastrowid")
        keys = tuple(row)
        rendered = self._rendered.get((keys, frozenset()))
        if rendered is None:
            rendered = self._rendered[(keys, frozenset())] = self._render(keys, frozenset())
        sql, procs, positional = rendered
        params = (
            _positional(procs, [row])[0]
            if positional
            else {k: (row[k] if p is None else p(row[k])) for k, p in procs}
        )
        with cursor(conn) as cur:
            run(conn, cur, sql, params, many=False)
            rowid = cur.lastrowid
        if not isinstance(rowid, int):
            raise RuntimeError(f"{self.table.name}: the insert gave no rowid")
        return rowid


def _positional(
    procs: tuple[tuple[str, Processor], ...], rows: Sequence[Mapping[str, Any]]
) -> list[tuple[Any, ...]]:
    """Each row's values in the SQL's order (one C-level itemgetter call a row), then the
    columns that still have a processor through it."""
    names = [k for k, _ in procs]
    if len(names) == 1:
        only = names[0]
        return [(r[only] if procs[0][1] is None else procs[0][1](r[only]),) for r in rows]
    get = itemgetter(*names)
    todo = [(i, p) for i, (_, p) in enumerate(procs) if p is not None]
    if not todo:
        return [get(r) for r in rows]
    out = []
    for r in rows:
        values = list(get(r))
        for i, p in todo:
            values[i] = p(values[i])
        out.append(tuple(values))
    return out


class DriverProbe:
    """A one-parameter SELECT that only asks whether a row exists (no result types needed)."""

    def __init__(self, query: Select[Any], dialect: Dialect) -> None:
        compiled = query.compile(dialect=dialect)
        names = compiled.positiontup if compiled.positional else list(compiled.binds)
        if names is None or len(names) != 1:
            raise ValueError(f"a probe takes exactly one parameter, not {names}")
        self.name = names[0]
        self.sql = compiled.string
        self.positional = compiled.positional

    def exists(self, conn: Connection, value: Any) -> bool:
        params: Any = (value,) if self.positional else {self.name: value}
        with cursor(conn) as cur:
            run(conn, cur, self.sql, params, many=False)
            return cur.fetchone() is not None


class DriverPresent:
    """Which of many values a column holds: `SELECT col FROM t WHERE col IN (...)` on the DBAPI
    cursor, rendered once per list size (sizes rounded up to a power of two, the list padded
    with its last value), asked `chunk` values at a time."""

    def __init__(self, column: Column[Any], dialect: Dialect, chunk: int = 512) -> None:
        self.column = column
        self.dialect = dialect
        self.chunk = chunk
        self._rendered: dict[int, tuple[str, list[str] | None]] = {}

    def _render(self, size: int) -> tuple[str, list[str] | None]:
        names = [f"v{i}" for i in range(size)]
        query = select(self.column).where(self.column.in_([bindparam(n) for n in names]))
        compiled = query.compile(dialect=self.dialect)
        order = compiled.positiontup if compiled.positional else list(compiled.binds)
        if order is None or sorted(order) != sorted(names):
            raise ValueError(f"{self.column}: cannot bind {size} values as {order}")
        return compiled.string, (list(order) if compiled.positional else None)

    def present(self, conn: Connection, values: Sequence[Any]) -> set[Any]:
        found: set[Any] = set()
        for start in range(0, len(values), self.chunk):
            part = list(values[start : start + self.chunk])
            size = 1 << (len(part) - 1).bit_length()
            part += [part[-1]] * (size - len(part))
            rendered = self._rendered.get(size)
            if rendered is None:
                rendered = self._rendered[size] = self._render(size)
            sql, order = rendered
            params: Any
            if order is not None:  # positional: the values in the order the SQL binds them
                params = tuple(part[int(n[1:])] for n in order)
            else:
                params = {f"v{i}": v for i, v in enumerate(part)}
            with cursor(conn) as cur:
                run(conn, cur, sql, params, many=False)
                found.update(row[0] for row in cur.fetchall())
        return found
