"""``local-sql``: an on-prem CRM database as a cxbridge source (SQLite, PostgreSQL, MySQL/MariaDB).

Tables and columns are mapped declaratively (:class:`~cxbridge_local.config.LocalSqlConfig`); values living
in related tables (contact mechanisms, addresses) are fetched in one batched query per page. Reads are
keyset-paged on ``(change column, id)`` -- see :mod:`cxbridge_local.sqlread` for the queries and for how
changes in related tables are detected. Write-back updates mapped columns (see :mod:`cxbridge_local.sqlwrite`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from cxbridge.adapters import (
    Adapter,
    AdapterContext,
    CheckResult,
    Cursor,
    FieldInfo,
    Page,
    RecordRef,
    StreamInfo,
    WriteOp,
    WriteResult,
)
from cxbridge.errors import AdapterError
from cxbridge.models import SourceRecord

from .config import LocalSqlConfig
from .sqlread import _PLAIN, StreamPlan, jsonable
from .sqlschema import Schema, create_engine, redacted_url
from .sqlwrite import Writer
from .streaminfo import stream_info

__all__ = ["LocalSqlAdapter"]

_NO_STAMP = object()

log = logging.getLogger(__name__)


class _RowConverter:
    """JSON-safe copies of a row's values; a column's last converted value is kept, because rows come in
    change order and records changed together share their timestamps (one conversion per distinct value)."""

    def __init__(self, width: int) -> None:
        self.last: list[tuple[Any, Any]] = [(_NO_STAMP, None)] * width

    def __call__(self, values: Sequence[Any]) -> tuple[Any, ...]:
        out = []
        last = self.last
        for i, value in enumerate(values):
            if type(value) in _PLAIN:
                out.append(value)
                continue
            seen = last[i]
            if seen[0] is not value and seen[0] != value:
                seen = last[i] = (value, jsonable(value))
            out.append(seen[1])
        return tuple(out)


class LocalSqlAdapter(Adapter):
    """Reads (and writes back to) the tables of a local CRM database."""

    write_batch_size = 500
    capabilities = frozenset({"write", "erase", "read_ids", "list_ids", "describe"})
    #: Reading a local database is CPU work under the GIL: a read-ahead thread cannot overlap the store's
    #: writes and costs 3-18 % CPU (bench/LOCAL_RESULTS.md), so the engine reads pages inline.
    prefetch_pages = False

    def __init__(self, config: LocalSqlConfig, context: AdapterContext) -> None:
        super().__init__(config, context)
        self.config: LocalSqlConfig = config
        url = config.url.get_secret_value()
        self.url_redacted = redacted_url(url)
        try:
            password = sa.engine.make_url(url).password
        except Exception:  # unparseable: create_engine below reports it (redacted)
            password = None
        self._secrets = [s for s in (*context.secrets, url, password) if s]
        self.engine = create_engine(config)
        self.schema = Schema(self.engine)
        self._plans: dict[str, StreamPlan] = {}
        self._writer: Writer | None = None

    # ------------------------------------------------------------------------------------------------ helpers

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(str(secret), "***")
        return text

    def _error(self, exc: Exception, what: str) -> AdapterError:
        transient = isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError)
        detail = self.redact(str(getattr(exc, "orig", None) or exc)).splitlines()[0][:300]
        return AdapterError(
            f"{what} on {self.url_redacted}: {type(exc).__name__}: {detail}",
            source=self.context.source,
            kind="transient" if transient else "system",
        )

    def plan(self, stream: str) -> StreamPlan:
        if stream not in self.config.objects:
            raise AdapterError(
                f"unknown stream {stream!r}; configured: {', '.join(self.config.objects)}",
                source=self.context.source,
                kind="config",
            )
        if stream not in self._plans:
            try:
                self._plans[stream] = StreamPlan.build(stream, self.config.objects[stream], self.schema)
            except AdapterError as exc:
                exc.source = self.context.source
                raise
            except sa.exc.SQLAlchemyError as exc:
                raise self._error(exc, f"reflecting stream {stream!r}") from None
        return self._plans[stream]

    def object_stream(self, object_type: str) -> str | None:
        """The stream whose records have ``object_type``."""
        for name, obj in self.config.objects.items():
            if (obj.object_type or name) == object_type:
                return name
        return None

    def _page_size(self, stream: str) -> int:
        return self.config.objects[stream].page_size or self.config.page_size

    # ------------------------------------------------------------------------------------------------ streams

    def streams(self) -> list[StreamInfo]:
        return [
            stream_info(
                name,
                obj,
                incremental=obj.change_column is not None,
                supports_deletes=obj.soft_delete_column is not None,
            )
            for name, obj in self.config.objects.items()
        ]

    # ------------------------------------------------------------------------------------------------ reading

    def _records(self, plan: StreamPlan, conn: sa.Connection, rows: Sequence[sa.Row[Any]]) -> list[SourceRecord]:
        """Rows (columns in ``plan.columns`` order, then the modstamp) to records. Hot path: no per-row
        pydantic validation (values are already JSON-safe and modstamps aware UTC)."""
        id_pos, n = plan.pos(plan.obj.id_column), len(plan.columns)
        deleted = [plan.is_deleted(r) for r in rows]
        live = [r[id_pos] for r, gone in zip(rows, deleted, strict=True) if not gone]
        related = plan.fetch_related(conn, live) if plan.related and live else {}
        related_items = [(rp.name, related.get(rp.name, {})) for rp in plan.related]
        object_type = plan.obj.object_type or plan.stream
        keys = [str(c.key) for c in plan.columns]  # plain str: SQLAlchemy names are a str subclass
        from_db = plan.codec.from_db if plan.codec else None
        ref_pos = plan.pos(plan.obj.customer_ref_column) if plan.obj.customer_ref_column else None
        ref_object = plan.obj.customer_object or "customers"
        source = self.context.source
        construct = SourceRecord.trusted  # values are JSON-safe and modstamps aware UTC already
        plain = _PLAIN
        converted = _RowConverter(n)
        out = []
        raw_stamp: Any = _NO_STAMP
        modstamp = None
        for row, gone in zip(rows, deleted, strict=True):
            sid = str(row[id_pos])
            if from_db is not None and row[n] != raw_stamp:  # bulk updates share stamps: parse each once
                raw_stamp = row[n]
                modstamp = from_db(raw_stamp)
            if gone:
                out.append(construct(source, object_type, sid, modstamp, {}, True))
                continue
            values = row[:n]
            for value in values:
                if type(value) not in plain:
                    values = converted(values)
                    break
            fields = dict(zip(keys, values, strict=True))
            for name, related_values in related_items:
                fields[name] = related_values.get(sid, [])
            assoc: dict[str, list[str]] = {}
            if ref_pos is not None and row[ref_pos] is not None:
                assoc[ref_object] = [str(row[ref_pos])]
            out.append(construct(source, object_type, sid, modstamp, fields, False, None, assoc))
        return out

    def read(self, stream: str, cursor: Cursor, *, full: bool = False) -> Iterator[Page]:
        plan = self.plan(stream)
        size = self._page_size(stream)
        position = Cursor() if full else cursor
        calls = 1 + len(plan.related_groups())
        floor: Any = None  # computed-modstamp reads: every record below this raw value was yielded this run
        while True:
            upper: Any = None
            try:
                with self.engine.connect() as conn:
                    lower: Any = None
                    if plan.codec is not None:
                        plan.codec.detect(conn, plan.table)
                        if plan.windowed:
                            lower = floor
                            if lower is None and position.modstamp is not None:
                                lower = plan.codec.to_db(position.modstamp)
                            upper = plan.window_upper(conn, lower, size)
                            calls += 1
                    query = plan.page_query(position, size, lower=lower, upper=upper)
                    rows = conn.execute(query).all()
                    records = self._records(plan, conn, rows)
            except sa.exc.SQLAlchemyError as exc:
                raise self._error(exc, f"reading stream {stream!r}") from None
            if plan.codec is None:
                # full table every run: position in state while paging, cleared after the last page
                done = len(rows) < size
                state = {} if done else {"after_id": str(rows[-1][plan.pos(plan.obj.id_column)])}
                if rows or position.state:
                    yield Page(records, Cursor(state=state), api_calls=calls)
                if done:
                    return
                position = Cursor(state=state)
                continue
            if rows:
                last = records[-1]
                nxt = Cursor(modstamp=last.modstamp, last_id=last.source_id)
                if nxt == position:
                    raise AdapterError(
                        f"stream {stream!r} made no progress at {nxt.modstamp} / {nxt.last_id}: the change column "
                        "mixes storage formats (see the SQLite notes in the adapter docs)",
                        source=self.context.source,
                    )
                yield Page(records, nxt, api_calls=calls)
                calls = 1 + len(plan.related_groups())
                position = nxt
            if len(rows) < size:
                if upper is None:
                    return
                floor = upper  # this window is exhausted; the next one starts at its upper bound

    def read_ids(self, stream: str, ids: Sequence[str]) -> Iterator[Page]:
        plan = self.plan(stream)
        size = self._page_size(stream)
        object_type = plan.obj.object_type or stream
        for start in range(0, len(ids), size):
            chunk = [str(i) for i in ids[start : start + size]]
            try:
                with self.engine.connect() as conn:
                    if plan.codec is not None:
                        plan.codec.detect(conn, plan.table)
                    rows = conn.execute(plan.ids_query(chunk)).all()
                    records = self._records(plan, conn, rows)
            except sa.exc.SQLAlchemyError as exc:
                raise self._error(exc, f"reading ids of stream {stream!r}") from None
            found = {r.source_id for r in records}
            records += [
                SourceRecord(
                    source=self.context.source,
                    object_type=object_type,
                    source_id=i,
                    modstamp=None,
                    deleted=True,
                    merged_into=None,
                )
                for i in chunk
                if i not in found
            ]
            yield Page(records, Cursor(), api_calls=1 + len(plan.related_groups()))

    def list_ids(self, stream: str) -> Iterator[str]:
        plan = self.plan(stream)
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=self.config.page_size).execute(
                    plan.live_ids_query()
                )
                for row in result:
                    yield str(row[0])
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(exc, f"listing ids of stream {stream!r}") from None

    def describe(self, stream: str) -> list[FieldInfo]:
        plan = self.plan(stream)
        unique = {c.name for c in plan.table.columns if c.unique}
        for constraint in plan.table.constraints:
            if isinstance(constraint, sa.UniqueConstraint) and len(constraint.columns) == 1:
                unique.update(c.name for c in constraint.columns)
        for index in plan.table.indexes:
            if index.unique and len(index.columns) == 1:
                unique.update(c.name for c in index.columns)
        writable = self.writer.writable(stream)
        fields = [
            FieldInfo(
                name=c.key,
                type=str(c.type).lower(),
                writable=c.key in writable,
                unique=c.primary_key or c.key in unique,
            )
            for c in plan.table.columns
        ]
        fields += [FieldInfo(name=rp.name, type="array", writable=False) for rp in plan.related]
        return fields

    # ------------------------------------------------------------------------------------------------ writing

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            self._writer = Writer(self)
        return self._writer

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        return self.writer.write(ops)

    def erase(self, refs: Sequence[RecordRef]) -> list[WriteResult]:
        return self.writer.erase(refs)

    # ------------------------------------------------------------------------------------------------ checks

    def check(self, required_fields: Mapping[str, Iterable[str]]) -> list[CheckResult]:
        results: list[CheckResult] = []
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.select(sa.literal(1)))
            results.append(CheckResult("connection", True, f"connected to {self.url_redacted}"))
        except sa.exc.SQLAlchemyError as exc:
            return [CheckResult("connection", False, str(self._error(exc, "connecting")))]
        for stream in self.config.objects:
            try:
                plan = self.plan(stream)
            except AdapterError as exc:
                results.append(CheckResult(f"stream {stream}", False, str(exc)))
                continue
            detail = f"table {plan.table.name}: {len(plan.table.c)} columns, {len(plan.related)} related tables"
            if plan.codec is not None:
                with self.engine.connect() as conn:
                    nulls = conn.execute(
                        sa.select(sa.func.count()).select_from(plan.table).where(plan.codec.column.is_(None))
                    ).scalar_one()
                if nulls:
                    results.append(
                        CheckResult(
                            f"stream {stream}",
                            False,
                            f"{nulls} rows have NULL in {plan.obj.change_column}; incremental reads skip them "
                            "(backfill the column)",
                        )
                    )
                    continue
            results.append(CheckResult(f"stream {stream}", True, detail))
        for object_type, names in required_fields.items():
            stream_name = self.object_stream(object_type)
            if stream_name is None:
                results.append(CheckResult(f"write-back {object_type}", False, "no stream has this object type"))
                continue
            try:
                writable = self.writer.writable(stream_name)
            except AdapterError as exc:
                results.append(CheckResult(f"write-back {object_type}", False, str(exc)))
                continue
            missing = [n for n in names if n not in writable]
            results.append(
                CheckResult(
                    f"write-back {object_type}",
                    not missing,
                    f"not writable or missing: {', '.join(missing)}" if missing else "columns exist and writable",
                )
            )
        return results

    def close(self) -> None:
        self.engine.dispose()
