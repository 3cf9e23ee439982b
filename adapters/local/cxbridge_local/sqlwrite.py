"""Write-back and erasure for the SQL source.

A batch of ops runs in one transaction; every op runs inside its own SAVEPOINT, so a row that fails (unknown
record, constraint violation, bad value) is rolled back alone and reported with ``ok=False`` while the rest of
the batch commits. Ops that can be judged without the database (unknown column, unsupported action) fail
before touching it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cxbridge.adapters import RecordRef, WriteOp, WriteResult
from cxbridge.errors import AdapterError

from .sqlschema import python_id
from .sqlstamp import StampCodec

if TYPE_CHECKING:
    from .sql import LocalSqlAdapter

__all__ = ["Writer"]

log = logging.getLogger(__name__)

_ALIASES = {"tasks": "task", "notes": "note"}


class _OpFailed(Exception):
    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def _coerce(column: sa.Column[Any], value: Any) -> Any:
    """Accept ISO strings for date/time columns (the outbox stores JSON values)."""
    if isinstance(value, str) and value:
        if isinstance(column.type, sa.DateTime):
            return datetime.fromisoformat(value)
        if isinstance(column.type, sa.Date):
            return date.fromisoformat(value[:10])
    return value


class Writer:
    """Applies write ops and erasures for a :class:`~cxbridge_local.sql.LocalSqlAdapter`."""

    def __init__(self, adapter: LocalSqlAdapter) -> None:
        self.adapter = adapter

    def writable(self, stream: str) -> set[str]:
        """Columns write-back may set on the stream's table."""
        plan = self.adapter.plan(stream)
        obj = plan.obj
        if obj.writable_columns is not None:
            return set(obj.writable_columns)
        return {c.key for c in plan.table.columns if c.key not in (obj.id_column, obj.change_column)}

    # -------------------------------------------------------------------------------------------------- ops

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        if len(ops) > self.adapter.write_batch_size:
            raise AdapterError(
                f"write batch of {len(ops)} ops exceeds write_batch_size {self.adapter.write_batch_size}",
                source=self.adapter.context.source,
            )
        results: list[WriteResult] = []
        try:
            with self.adapter.engine.connect() as conn, conn.begin():
                for op in ops:
                    results.append(self._one(conn, op))
        except sa.exc.SQLAlchemyError as exc:
            # the batch transaction itself failed (connection lost, lock timeout at COMMIT): nothing was
            # written, every op may be retried
            err = self.adapter._error(exc, "writing")
            return [WriteResult(op.key, False, op.source_id, str(err), retryable=True) for op in ops]
        return results

    def _one(self, conn: sa.Connection, op: WriteOp) -> WriteResult:
        try:
            with conn.begin_nested():
                source_id = self._apply(conn, op)
            return WriteResult(op.key, True, source_id)
        except _OpFailed as exc:
            return WriteResult(op.key, False, op.source_id, str(exc), retryable=exc.retryable)
        except sa.exc.SQLAlchemyError as exc:
            transient = isinstance(exc, sa.exc.OperationalError)
            detail = self.adapter.redact(str(getattr(exc, "orig", None) or exc)).splitlines()[0][:300]
            return WriteResult(op.key, False, op.source_id, f"{type(exc).__name__}: {detail}", transient)

    def _apply(self, conn: sa.Connection, op: WriteOp) -> str | None:
        if op.action == "create":
            return self._create(conn, op)
        stream = self.adapter.object_stream(op.object_type)
        if stream is None:
            raise _OpFailed(f"no stream has object type {op.object_type!r}")
        plan = self.adapter.plan(stream)
        table, obj = plan.table, plan.obj
        writable = self.writable(stream)
        bad = [f for f in op.fields if f not in writable]
        if bad:
            raise _OpFailed(f"not writable or unknown column(s) on {table.name}: {', '.join(sorted(bad))}")
        values = {k: _coerce(table.c[k], v) for k, v in op.fields.items()}
        if obj.touch_on_write and obj.change_column and obj.change_column not in values:
            codec = plan.codec or StampCodec(table.c[obj.change_column], plan.dialect)
            codec.detect(conn, table)
            values[obj.change_column] = codec.param(self.adapter.context.now())
        id_col = plan.id_col
        if op.action == "update":
            if not op.source_id:
                raise _OpFailed("update needs a source_id")
            res = conn.execute(sa.update(table).where(id_col == python_id(id_col, op.source_id)).values(values))
            if res.rowcount == 0:
                raise _OpFailed(f"no {op.object_type} record with id {op.source_id!r}")
            return op.source_id
        if op.action == "upsert":
            if not op.id_property or op.id_value is None:
                raise _OpFailed("upsert needs id_property and id_value")
            if op.id_property not in table.c:
                raise _OpFailed(f"unknown upsert column {op.id_property!r} on {table.name}")
            key_col = table.c[op.id_property]
            found = conn.execute(sa.select(id_col).where(key_col == op.id_value).limit(2)).all()
            if len(found) > 1:
                raise _OpFailed(f"{op.id_property} = {op.id_value!r} matches several rows; not unique")
            if found:
                conn.execute(sa.update(table).where(id_col == found[0][0]).values(values))
                return str(found[0][0])
            values = {**obj.insert_defaults, **values, op.id_property: op.id_value}
            if obj.soft_delete_column and isinstance(obj.deleted_value, bool):
                values.setdefault(obj.soft_delete_column, not obj.deleted_value)
            res = conn.execute(sa.insert(table).values(values))
            pk = res.inserted_primary_key
            return str(pk[0]) if pk and pk[0] is not None else None
        raise _OpFailed(f"unsupported action {op.action!r}")

    def _create(self, conn: sa.Connection, op: WriteOp) -> str | None:
        creates = self.adapter.config.create
        target = creates.get(op.object_type) or creates.get(_ALIASES.get(op.object_type, ""))
        if target is None:
            raise _OpFailed(
                f"creating {op.object_type!r} records is not supported by this source "
                f"(configure [connection.create.{op.object_type}])"
            )
        table = self.adapter.schema.table(target.table, target.db_schema, key=f"create.{op.object_type}.table")
        values: dict[str, Any] = dict(target.defaults)
        for name, value in op.fields.items():
            column = target.columns.get(name, name)
            if column not in table.c:
                raise _OpFailed(f"{table.name} has no column for field {name!r}")
            values[column] = _coerce(table.c[column], value)
        if target.customer_ref_column:
            refs = [i for ids in op.associations.values() for i in ids]
            if refs:
                values[target.customer_ref_column] = refs[0]
        res = conn.execute(sa.insert(table).values(values))
        pk = res.inserted_primary_key
        return str(pk[0]) if pk and pk[0] is not None else None

    # -------------------------------------------------------------------------------------------------- erase

    def erase(self, refs: Sequence[RecordRef]) -> list[WriteResult]:
        results: list[WriteResult] = []
        try:
            with self.adapter.engine.connect() as conn, conn.begin():
                for ref in refs:
                    key = f"{ref.object_type}:{ref.source_id}"
                    try:
                        with conn.begin_nested():
                            self._erase_one(conn, ref)
                        results.append(WriteResult(key, True, ref.source_id))
                    except _OpFailed as exc:
                        results.append(WriteResult(key, False, ref.source_id, str(exc)))
                    except sa.exc.SQLAlchemyError as exc:
                        detail = self.adapter.redact(str(getattr(exc, "orig", None) or exc)).splitlines()[0]
                        results.append(WriteResult(key, False, ref.source_id, detail[:300], True))
        except sa.exc.SQLAlchemyError as exc:
            err = str(self.adapter._error(exc, "erasing"))
            return [WriteResult(f"{r.object_type}:{r.source_id}", False, r.source_id, err, True) for r in refs]
        return results

    def _erase_one(self, conn: sa.Connection, ref: RecordRef) -> None:
        stream = self.adapter.object_stream(ref.object_type)
        if stream is None:
            raise _OpFailed(f"no stream has object type {ref.object_type!r}")
        plan = self.adapter.plan(stream)
        pid = python_id(plan.id_col, ref.source_id)
        exists = conn.execute(sa.select(plan.id_col).where(plan.id_col == pid)).first()
        if exists is None:
            return  # already gone: erasure is idempotent
        # every row the party owns in a related table is personal data: delete by fk, whatever its kind
        cleared: set[tuple[str, str]] = set()
        for rp in plan.related:
            if (rp.table.fullname, rp.spec.fk) not in cleared:
                cleared.add((rp.table.fullname, rp.spec.fk))
                conn.execute(sa.delete(rp.table).where(rp.table.c[rp.spec.fk] == pid))
        if plan.obj.erase_mode == "delete":
            conn.execute(sa.delete(plan.table).where(plan.id_col == pid))
            return
        values = dict(plan.obj.anonymize)
        if plan.obj.change_column and plan.obj.change_column not in values and plan.codec is not None:
            plan.codec.detect(conn, plan.table)
            values[plan.obj.change_column] = plan.codec.param(self.adapter.context.now())
        conn.execute(sa.update(plan.table).where(plan.id_col == pid).values(values))
