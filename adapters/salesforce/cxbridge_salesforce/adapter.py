"""The Salesforce adapter: composes the client, readers, Bulk loader, delete reconciliation and writer."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

import requests

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
from cxbridge.errors import ConfigError, CxbridgeError
from cxbridge.retry import RetryPolicy

from .bulk import BulkReader
from .client import SalesforceClient
from .config import SalesforceConfig
from .reader import DeletedReconciler, RestReader
from .streams import OBJECTS, ObjectSpec, spec_for_stream, stream_name
from .writer import SalesforceWriter

__all__ = ["SalesforceAdapter"]

log = logging.getLogger(__name__)

#: describe types that cannot be selected in Bulk queries / flat CSV (compound fields).
_COMPOUND = {"address", "location", "base64"}
#: room for the URL-encoded SELECT list in a query URL (path, WHERE clause and headers need ~2,400 bytes).
_MAX_SELECT_CHARS = 14_000


class SalesforceAdapter(Adapter):
    """Reads Contacts, Leads, Accounts, Opportunities, Tasks, Events and Cases; writes through Collections."""

    write_batch_size = 200
    capabilities = frozenset({"write", "erase", "read_ids", "list_ids", "describe"})

    def __init__(
        self,
        config: SalesforceConfig,
        context: AdapterContext,
        *,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(config, context)
        self.config: SalesforceConfig = config
        self.client = SalesforceClient(
            config, sleep=context.sleep, source=context.source, session=session, retry=retry, state=context.state
        )
        self.writer = SalesforceWriter(self.client, task_key_field=config.task_key_field)
        self._describe: dict[str, dict[str, Any]] = {}

    # -- streams and fields ----------------------------------------------------------------------------------

    def _spec(self, object_type: str) -> ObjectSpec:
        return OBJECTS.get(object_type) or ObjectSpec(object_type, stream_name(object_type), "other", ("Id",))

    def streams(self) -> list[StreamInfo]:
        return [self._spec(obj).info() for obj in self.config.objects]

    def _object(self, stream: str) -> str:
        spec = spec_for_stream(stream)
        object_type = spec.object_type if spec else next(
            (o for o in self.config.objects if stream_name(o) == stream), None
        )
        if object_type is None or object_type not in self.config.objects:
            raise ConfigError(f"unknown stream {stream!r} (objects: {self.config.objects})",
                              key=f"sources.{self.context.source}.connection.objects")
        return object_type

    def _describe_object(self, object_type: str) -> dict[str, Any]:
        if object_type not in self._describe:
            self._describe[object_type] = self.client.call(
                lambda sf: getattr(sf, object_type).describe(), what=f"describe {object_type}"
            )
        return self._describe[object_type]

    def _fields(self, object_type: str) -> tuple[list[str], dict[str, str]]:
        """Fields to select: the default list and extras that exist, plus custom fields (describe-driven)."""
        described = {f["name"]: f for f in self._describe_object(object_type).get("fields", [])}
        types = {name: str(f.get("type")) for name, f in described.items()}
        spec = OBJECTS.get(object_type)
        wanted: list[str] = [n for n in (spec.fields if spec else ()) if n in described]
        if spec is None:
            wanted = [n for n, f in described.items() if f.get("type") not in _COMPOUND]
        if self.config.include_custom_fields:
            wanted += [n for n, f in described.items() if f.get("custom") and f.get("type") not in _COMPOUND]
        for name in self.config.extra_fields.get(object_type, []):
            if name not in described:
                raise ConfigError(f"{object_type} has no field {name!r} (describe)",
                                  key=f"sources.{self.context.source}.connection.extra_fields.{object_type}")
            wanted.append(name)
        for required in ("Id", "SystemModstamp"):
            if required not in wanted:
                wanted.insert(0, required)
        wanted = list(dict.fromkeys(wanted))
        if len(quote_plus(", ".join(wanted))) > _MAX_SELECT_CHARS:
            # REST queries travel in the URL: "the maximum length for the combined URI and headers is 16,384
            # bytes" (414 URI Too Long beyond; Salesforce Help, "Maximum number of rows returned by SOQL
            # queries over the REST API", article 000386264).
            raise ConfigError(
                f"{object_type} has {len(wanted)} fields to read, too many for one query URL; set "
                "include_custom_fields = false and list the custom fields you map in extra_fields",
                key=f"sources.{self.context.source}.connection.include_custom_fields",
            )
        return wanted, types

    def describe(self, stream: str) -> list[FieldInfo]:
        object_type = self._object(stream)
        return [
            FieldInfo(
                name=f["name"], label=f.get("label"), type=str(f.get("type", "string")),
                custom=bool(f.get("custom")), writable=bool(f.get("updateable")),
                unique=bool(f.get("unique") or f.get("externalId")),
            )
            for f in self._describe_object(object_type).get("fields", [])
        ]

    # -- reading ---------------------------------------------------------------------------------------------

    def read(self, stream: str, cursor: Cursor, *, full: bool = False) -> Iterator[Page]:
        """Incremental queryAll pages; Bulk API 2.0 for big initial loads; then deleted/ reconciliation."""
        object_type = self._object(stream)
        mark = self.client.usage.calls
        fields, types = self._fields(object_type)
        state = {k: v for k, v in dict(cursor.state).items() if k != "full_reconciliation_needed"}
        if full:
            state, cursor = {}, Cursor()
        now = self.context.now()
        rest = RestReader(self.client, self.context.source, object_type, fields)
        if "bulk" in state or (cursor.modstamp is None and self._bulk_worth_it(rest)):
            yield from self._bulk(object_type, fields, types, state, now, mark)
            return
        position = cursor
        for page in rest.pages(cursor, state=state, calls_mark=mark):
            position = page.cursor
            yield page
        start_text = state.get("deleted_until")
        if cursor.modstamp is None and start_text is None:
            # initial load: nothing to reconcile yet; deletes from now on are covered
            state["deleted_until"] = now.isoformat()
            yield Page([], Cursor(position.modstamp, position.last_id, state), api_calls=0)
            return
        start = datetime.fromisoformat(start_text) if start_text else cursor.modstamp
        assert start is not None
        reconciler = DeletedReconciler(rest, window_days=self.config.deleted_window_days)
        tombstones = reconciler.page(start=start, end=now, cursor=position, state=state)
        if tombstones is not None:
            yield tombstones

    def _bulk_worth_it(self, rest: RestReader) -> bool:
        if self.config.bulk_threshold <= 0:
            return True
        count = rest.count()
        log.info("initial load size", extra={"source": self.context.source, "object": rest.object_type,
                                             "rows": count})
        return count > self.config.bulk_threshold

    def _bulk(self, object_type: str, fields: list[str], types: dict[str, str], state: dict[str, Any],
              now: datetime, mark: int) -> Iterator[Page]:
        bulk_fields = [f for f in fields if types.get(f) not in _COMPOUND]
        reader = BulkReader(
            self.client, self.context.source, object_type, bulk_fields, types,
            page_size=self.config.page_size, max_records=self.config.bulk_max_records,
            poll_seconds=self.config.bulk_poll_seconds, poll_max_seconds=self.config.bulk_poll_max_seconds,
            timeout_seconds=self.config.bulk_timeout_seconds, sleep=self.context.sleep,
        )
        yield from reader.pages(state, now=now, calls_mark=mark)

    def read_ids(self, stream: str, ids: Sequence[str]) -> Iterator[Page]:
        object_type = self._object(stream)
        fields, _ = self._fields(object_type)
        rest = RestReader(self.client, self.context.source, object_type, fields)
        for records in rest.by_ids(list(ids)):
            yield Page(records, Cursor(), api_calls=1)

    def list_ids(self, stream: str) -> Iterator[str]:
        object_type = self._object(stream)
        yield from RestReader(self.client, self.context.source, object_type, ["Id"]).live_ids()

    # -- writing ---------------------------------------------------------------------------------------------

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        return self.writer.write(ops)

    def erase(self, refs: Sequence[RecordRef]) -> list[WriteResult]:
        return self.writer.erase(refs)

    # -- doctor ----------------------------------------------------------------------------------------------

    def check(self, required_fields: Mapping[str, Iterable[str]]) -> list[CheckResult]:
        """Login, API access (limits resource, quota share) and the write-back fields (describe)."""
        results: list[CheckResult] = []
        try:
            self.client.sf  # noqa: B018 -- logs in
            results.append(CheckResult("login", True, f"{self.config.auth.flow} at {self.config.login_url}"))
        except CxbridgeError as exc:
            return [CheckResult("login", False, str(exc))]
        try:
            limits = self.client.call(lambda sf: sf.limits(), what="limits")
            daily = limits.get("DailyApiRequests", {})
            maximum, remaining = int(daily.get("Max", 0)), int(daily.get("Remaining", 0))
            used_share = (maximum - remaining) / maximum if maximum else 0.0
            ok = used_share < self.config.quota_share
            results.append(CheckResult(
                "api access", ok,
                f"daily API requests {maximum - remaining}/{maximum} used ({used_share:.0%}; "
                f"stop at {self.config.quota_share:.0%})",
            ))
        except CxbridgeError as exc:
            results.append(CheckResult("api access", False, str(exc)))
            return results
        for object_type, names in required_fields.items():
            try:
                described = {f["name"]: f for f in self._describe_object(object_type).get("fields", [])}
            except CxbridgeError as exc:
                results.append(CheckResult(f"fields {object_type}", False, str(exc)))
                continue
            missing = [n for n in names if n not in described]
            readonly = [n for n in names if n in described and not described[n].get("updateable")]
            problems = ([f"missing: {', '.join(missing)}"] if missing else []) + (
                [f"not writable: {', '.join(readonly)}"] if readonly else [])
            results.append(CheckResult(f"fields {object_type}", not problems,
                                       "; ".join(problems) or f"{', '.join(names)} writable"))
        return results

    def close(self) -> None:
        self.client.close()
