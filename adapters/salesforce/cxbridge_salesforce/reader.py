"""Reading one object: incremental REST ``queryAll`` pages and the ``deleted/`` reconciliation.

REST paging (REST API Developer Guide, "QueryAll" and "QueryAll More Results",
https://developer.salesforce.com/docs/platform/api-rest/guide/resources-queryall.html): up to 2,000 rows per
response; when ``done`` is false, ``nextRecordsUrl`` names the next batch, and the remaining batches still
include the deleted rows of the original ``queryAll``. We read ``SystemModstamp`` rather than
``LastModifiedDate`` because automated processes (workflow, roll-ups, merges, deletes) change only the former
(Object Reference, "System Fields": SystemModstamp is the "date and time when a user or automated process
last modified this record").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from cxbridge.adapters import Cursor, Page
from cxbridge.errors import RemoteError
from cxbridge.models import SourceRecord

from .client import SalesforceClient
from .records import to_record
from .soql import keyset_query, parse_datetime, quote

__all__ = ["DeletedReconciler", "RestReader"]

log = logging.getLogger(__name__)


class RestReader:
    """Pages of an incremental ``queryAll`` in ``(SystemModstamp, Id)`` order.

    :param client: the connection.
    :param source: source name.
    :param object_type: the sObject.
    :param fields: fields to select (must exist; see describe).
    """

    def __init__(self, client: SalesforceClient, source: str, object_type: str, fields: Sequence[str]) -> None:
        self.client = client
        self.source = source
        self.object_type = object_type
        self.fields = list(fields)

    def pages(self, cursor: Cursor, *, state: dict[str, Any], calls_mark: int | None = None) -> Iterator[Page]:
        """Yield pages after ``cursor``; each page's cursor is its last row (inclusive keyset next time).

        ``calls_mark``: the call counter before the read began (describe, COUNT), so the first page's
        ``api_calls`` includes them. If a query locator expires mid-run (``INVALID_QUERY_LOCATOR``), the query
        is issued again from the last yielded position, so nothing is skipped or repeated.
        """
        position = (cursor.modstamp, cursor.last_id)
        calls_before = self.client.usage.calls if calls_mark is None else calls_mark
        soql = keyset_query(self.object_type, self.fields, after=position[0], after_id=position[1])
        result = self.client.call(
            lambda sf: sf.query(soql, include_deleted=True), what=f"queryAll {self.object_type}"
        )
        while True:
            records = [to_record(self.source, self.object_type, row) for row in result.get("records", [])]
            if records:
                last = records[-1]
                position = (last.modstamp, last.source_id)
                calls = self.client.usage.calls - calls_before
                calls_before = self.client.usage.calls
                yield Page(records, Cursor(position[0], position[1], dict(state)), api_calls=max(calls, 1))
            if result.get("done", True) or not result.get("nextRecordsUrl"):
                return
            next_url = result["nextRecordsUrl"]
            try:
                result = self._more(next_url)
            except RemoteError as exc:
                if "INVALID_QUERY_LOCATOR" not in str(exc) and "INVALID_QUERY_LOCATOR" not in (exc.body or ""):
                    raise
                log.warning("query locator expired; re-querying from the last page", extra={"source": self.source})
                soql = keyset_query(self.object_type, self.fields, after=position[0], after_id=position[1])
                result = self._query_all(soql)

    def _more(self, url: str) -> dict[str, Any]:
        return dict(self.client.call(lambda sf: sf.query_more(url, identifier_is_url=True),
                                     what=f"query more {self.object_type}"))

    def _query_all(self, soql: str) -> dict[str, Any]:
        return dict(self.client.call(lambda sf: sf.query(soql, include_deleted=True),
                                     what=f"queryAll {self.object_type}"))

    def rows(self, soql: str) -> list[dict[str, Any]]:
        """Every row of a (small) queryAll, following nextRecordsUrl."""
        return list(self.client.call(lambda sf: list(sf.query_all_iter(soql, include_deleted=True)),
                                     what=f"queryAll ids {self.object_type}"))

    def count(self) -> int:
        """``SELECT COUNT() FROM <object>`` through queryAll (one call; ``totalSize`` holds the count)."""
        soql = f"SELECT COUNT() FROM {self.object_type}"
        result = self.client.call(
            lambda sf: sf.query(soql, include_deleted=True), what=f"count {self.object_type}"
        )
        return int(result.get("totalSize", 0))

    def by_ids(self, ids: Sequence[str], *, chunk: int = 200) -> Iterator[list[SourceRecord]]:
        """Current state of the given ids; ids Salesforce no longer returns come back as tombstones."""
        for start in range(0, len(ids), chunk):
            part = list(dict.fromkeys(ids[start : start + chunk]))
            id_list = ", ".join(quote(i) for i in part)
            soql = f"SELECT {', '.join(self.fields)} FROM {self.object_type} WHERE Id IN ({id_list})"
            rows = self.rows(soql)
            found = {row["Id"]: to_record(self.source, self.object_type, row) for row in rows}
            out = []
            for record_id in part:
                record = found.get(record_id)
                if record is None:
                    record = SourceRecord(
                        source=self.source, object_type=self.object_type, source_id=record_id,
                        fields={"Id": record_id, "IsDeleted": True}, deleted=True, modstamp=None,
                        merged_into=None,
                    )
                out.append(record)
            yield out

    def live_ids(self) -> Iterator[str]:
        """Every live (not deleted) id, via ``query`` (not queryAll) paged by nextRecordsUrl."""
        soql = f"SELECT Id FROM {self.object_type} ORDER BY Id"
        result = self.client.call(lambda sf: sf.query(soql), what=f"list ids {self.object_type}")
        while True:
            for row in result.get("records", []):
                yield row["Id"]
            if result.get("done", True):
                return
            next_url = result["nextRecordsUrl"]
            result = self._more(next_url)


class DeletedReconciler:
    """Deletes the incremental query cannot see: records already purged from the Recycle Bin.

    ``GET /sobjects/{type}/deleted/?start=&end=`` (REST API Developer Guide, "Get Deleted Records"; SOAP API,
    ``getDeleted()``): ``start`` must precede ``end`` by more than one minute, results reach back no more than
    15 days (older docs say 30 -- we use the conservative 15, configurable), and the next call should start at
    ``latestDateCovered``. Ids still visible to ``queryAll`` are skipped: the keyset query reports those with
    their ``MasterRecordId``. If the gap is older than the window the state records
    ``full_reconciliation_needed`` (see docs/salesforce.md).
    """

    def __init__(self, reader: RestReader, *, window_days: int) -> None:
        self.reader = reader
        self.window = timedelta(days=window_days)

    def page(self, *, start: datetime, end: datetime, cursor: Cursor, state: dict[str, Any]) -> Page | None:
        """One page of tombstones for ids deleted in ``[start, end]`` and no longer queryable, or None."""
        client = self.reader.client
        if end - start <= timedelta(minutes=1):
            return None
        calls_before = client.usage.calls
        new_state = dict(state)
        if start < end - self.window:
            log.warning(
                "deleted/ window exceeded; a full reconciliation is needed",
                extra={"source": self.reader.source, "object": self.reader.object_type},
            )
            new_state["deleted_until"] = end.isoformat()
            new_state["full_reconciliation_needed"] = True
            return Page([], Cursor(cursor.modstamp, cursor.last_id, new_state), api_calls=0)
        object_type = self.reader.object_type
        try:
            result = client.call(
                lambda sf: getattr(sf, object_type).deleted(start, end), what=f"deleted {object_type}"
            )
        except RemoteError as exc:
            if "INVALID_REPLICATION_DATE" not in (exc.body or ""):
                raise
            new_state["deleted_until"] = end.isoformat()
            new_state["full_reconciliation_needed"] = True
            return Page([], Cursor(cursor.modstamp, cursor.last_id, new_state), api_calls=1)
        deleted = {
            item["id"]: parse_datetime(item.get("deletedDate")) for item in result.get("deletedRecords", [])
        }
        records: list[SourceRecord] = []
        if deleted:
            ids = list(deleted)
            visible: set[str] = set()
            for start_ix in range(0, len(ids), 200):
                part = ids[start_ix : start_ix + 200]
                soql = f"SELECT Id FROM {object_type} WHERE Id IN ({', '.join(quote(i) for i in part)})"
                rows = self.reader.rows(soql)
                visible.update(row["Id"] for row in rows)
            records = [
                SourceRecord(
                    source=self.reader.source, object_type=object_type, source_id=record_id,
                    modstamp=stamp, fields={"Id": record_id, "IsDeleted": True}, deleted=True,
                    merged_into=None,
                )
                for record_id, stamp in deleted.items()
                if record_id not in visible
            ]
        covered = parse_datetime(result.get("latestDateCovered")) or end
        new_state["deleted_until"] = min(covered, end).isoformat()
        return Page(records, Cursor(cursor.modstamp, cursor.last_id, new_state),
                    api_calls=client.usage.calls - calls_before)

