"""The HubSpot adapter: composes the client, the pagers, the stream specs and the writer.

Reading a stream:

1. **Initial load** (no cursor, or ``full=True``): the list endpoint, 100 per page, position (``after``
   token and the load's start time) in :attr:`Cursor.state`, so a crash resumes at the next page. The last
   page hands over to incremental reads from the load's start time.
2. **Incremental**: the search endpoint from the cursor's modstamp in keyset windows of 200 (see
   :mod:`cxbridge_hubspot.paging`); each page's cursor is its last ``(modstamp, id)`` plus the pager mode.
3. **Archived sweep**: every ``archived_sweep_seconds`` an incremental read also lists ``archived=true``
   records and yields tombstones for those archived since the last sweep.

Merges are read from ``hs_merged_object_ids`` (alias records) and from targeted reads answering with another
id than requested. Interactions carry the ids of their contacts (inline associations on list pages,
associations v4 batch reads otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

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
from cxbridge.errors import AdapterError, ConfigError
from cxbridge.models import SourceRecord

from .client import HubSpotClient
from .config import HubSpotConfig, OAuthAuth
from .paging import ListPager, SearchPager
from .streams import SPECS, StreamSpec, parse_time, to_ms, to_record
from .write import Writer

__all__ = ["HubSpotAdapter", "pending_key", "queue_rereads"]

log = logging.getLogger(__name__)
_SWEEP_MARGIN_MS = 300_000
#: Property definitions are re-read this often by a long-lived adapter (new custom properties show up).
DESCRIBE_TTL_SECONDS = 3600
#: Longest comma-joined property list sent in a list call's query string.
MAX_LIST_PROPERTY_CHARS = 3000
#: Read scopes per stream; write-back and engagement creation need ``crm.objects.contacts.write``.
#: Source: https://developers.hubspot.com/docs/api/oauth/scopes
READ_SCOPES = {"contacts": "crm.objects.contacts.read", "companies": "crm.objects.companies.read",
               "deals": "crm.objects.deals.read", "tickets": "tickets"}


def pending_key(stream: str) -> str:
    """The source-state key of ids waiting for a targeted re-read of ``stream``."""
    return f"webhook.pending.{stream}"


def queue_rereads(state: Any, stream: str, ids: Sequence[str]) -> None:
    """Queue ids for a targeted re-read at the start of the stream's next incremental read."""
    key = pending_key(stream)
    current = [str(i) for i in (state.get(key) or [])]
    state.set(key, current + [str(i) for i in ids if str(i) not in set(current)])


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class HubSpotAdapter(Adapter):
    """A HubSpot portal as a cxbridge source."""

    write_batch_size = 100
    capabilities = frozenset({"write", "erase", "read_ids", "list_ids", "describe"})

    def __init__(self, config: HubSpotConfig, context: AdapterContext) -> None:
        super().__init__(config, context)
        self.config: HubSpotConfig = config
        unknown = [s for s in config.streams if s not in SPECS]
        if unknown:
            raise ConfigError(f"unknown HubSpot stream(s) {unknown}; known: {sorted(SPECS)}",
                              key=f"sources.{context.source}.connection.streams")
        self.client = HubSpotClient(config, context)
        self.writer = Writer(self.client, context.now)
        self._fields: dict[str, list[FieldInfo]] = {}
        self._described_at: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------- streams
    def streams(self) -> list[StreamInfo]:
        return [spec.info() for name, spec in SPECS.items() if name in self.config.streams]

    def _spec(self, stream: str) -> StreamSpec:
        if stream not in SPECS or stream not in self.config.streams:
            raise ConfigError(f"HubSpot source has no stream {stream!r}",
                              key=f"sources.{self.context.source}.streams")
        return SPECS[stream]

    def describe(self, stream: str) -> list[FieldInfo]:
        """Properties of the object type (``GET /crm/v3/properties/{objectType}``), custom ones flagged.

        Source: https://developers.hubspot.com/docs/api/crm/properties
        """
        now = self.context.now().timestamp()
        if stream not in self._fields or now - self._described_at.get(stream, 0.0) > DESCRIBE_TTL_SECONDS:
            self._described_at[stream] = now
            resp = self.client.get(f"/crm/v3/properties/{stream}")
            if resp.status_code != 200:
                raise self.client.error(resp, f"properties of {stream}", self.context.source)
            self._fields[stream] = [
                FieldInfo(
                    name=p["name"], label=p.get("label"), type=p.get("type", "string"),
                    custom=not p.get("hubspotDefined", False),
                    writable=not (p.get("modificationMetadata") or {}).get("readOnlyValue", False)
                    and not p.get("calculated", False),
                    unique=bool(p.get("hasUniqueValue")),
                )
                for p in resp.json().get("results", [])
            ]
        return self._fields[stream]

    def properties_for(self, stream: str) -> list[str]:
        """Properties read for ``stream``: the default mapping's, configured extras, discovered custom ones."""
        spec = self._spec(stream)
        names = spec.base_properties() | set(self.config.extra_properties.get(stream, []))
        if self.config.discover_custom_properties:
            names |= {f.name for f in self.describe(stream) if f.custom}
        return sorted(names)

    # --------------------------------------------------------------------------------------------- reads
    def read(self, stream: str, cursor: Cursor, *, full: bool = False) -> Iterator[Page]:
        spec = self._spec(stream)
        props = self.properties_for(stream)
        state = dict(cursor.state)
        skip: set[tuple[str, int]] = set()
        if full or cursor.modstamp is None:  # first run, a crashed load, or a cursor the engine distrusts
            resume = state if state.get("phase") == "list" else {}
            last_list: Cursor | None = None
            for page in self._read_list(spec, props, cursor, resume, skip):
                last_list = page.cursor
                yield page
            if last_list is None or last_list.state.get("phase") != "search":
                return
            cursor = last_list  # the load is done: go on with what changed while it ran
        else:
            yield from self._pending_rereads(spec, cursor)
        last = cursor
        for page in self._read_search(spec, props, cursor, skip):
            last = page.cursor
            yield page
        yield from self._sweep_archived(spec, last)

    def _pending_rereads(self, spec: StreamSpec, cursor: Cursor) -> Iterator[Page]:
        """Ids queued by the webhook receiver (:func:`queue_rereads`), re-read first; the cursor stays put."""
        key = pending_key(spec.name)
        pending = [str(i) for i in (self.context.state.get(key) or [])]
        if not pending:
            return
        for page in self.read_ids(spec.name, pending):
            yield Page(page.records, cursor, api_calls=page.api_calls)
        left = [i for i in (self.context.state.get(key) or []) if str(i) not in set(pending)]
        self.context.state.set(key, left or None)

    def _calls(self) -> int:
        return self.client.api_calls

    def _read_list(self, spec: StreamSpec, props: list[str], cursor: Cursor, state: dict[str, Any],
                   changed_during_load: set[tuple[str, int]]) -> Iterator[Page]:
        """The initial load; records stamped after it began are noted so the search that follows skips them."""
        started = int(state.get("started_ms") or to_ms(self.context.now()))
        # Properties go into the list call's query string; a portal with hundreds of custom properties would
        # exceed the URL length HubSpot accepts (414, see error-handling docs), so wide reads list ids only and
        # fetch the properties with a POST batch read (one more call per page).
        wide = len(",".join(props)) > MAX_LIST_PROPERTY_CHARS
        listed = sorted({"hs_object_id", spec.modstamp}) if wide else props
        pager = ListPager(self.client, spec.name, listed, associations=spec.associations, after=state.get("after"),
                          limit=self.config.list_page_size)
        mark = self._calls()
        for results, nxt in pager:
            if wide and results:
                results = self._with_properties(spec, results, props)
            records = [r for obj in results for r in to_record(self.context.source, spec, obj)]
            changed_during_load.update((r.source_id, to_ms(r.modstamp)) for r in records
                                       if r.modstamp is not None and to_ms(r.modstamp) >= started)
            if nxt is not None:
                nxt_cursor = Cursor(modstamp=cursor.modstamp, last_id=cursor.last_id,
                                    state={"phase": "list", "after": nxt, "started_ms": started})
            else:
                nxt_cursor = Cursor(modstamp=_dt(started), last_id=None,
                                    state={"phase": "search", "mode": "range", "swept_ms": started})
            calls, mark = self._calls() - mark, self._calls()
            yield Page(records, nxt_cursor, api_calls=calls)

    def _with_properties(self, spec: StreamSpec, listed: list[dict[str, Any]],
                         props: list[str]) -> list[dict[str, Any]]:
        """Listed objects with ``props`` from a batch read (records deleted meanwhile drop out)."""
        resp = self.client.post(f"/crm/v3/objects/{spec.name}/batch/read",
                                json={"properties": props, "inputs": [{"id": str(o["id"])} for o in listed]})
        if resp.status_code not in (200, 207):
            raise self.client.error(resp, f"batch read {spec.name}", self.context.source)
        full = {str(o["id"]): o for o in resp.json().get("results") or []}
        out = []
        for obj in listed:
            got = full.get(str(obj["id"]))
            if got is not None:
                if obj.get("associations"):
                    got = {**got, "associations": obj["associations"]}
                out.append(got)
        return out

    def _read_search(self, spec: StreamSpec, props: list[str], cursor: Cursor,
                     skip: set[tuple[str, int]]) -> Iterator[Page]:
        state = dict(cursor.state)
        assert cursor.modstamp is not None
        start = to_ms(cursor.modstamp)
        tie = state.get("mode") == "tie" and state.get("tie_ms") == start and cursor.last_id is not None
        pager = SearchPager(self.client, spec.name, spec.modstamp, props, start,
                            tie_after_id=cursor.last_id if tie else None,
                            tie_seen=list(state.get("tie_seen") or []) if tie else (),
                            limit=self.config.search_page_size)
        mark = self._calls()
        for sp in pager:
            if skip:
                sp.results = [r for r in sp.results if (str(r["id"]), pager.stamp_of(r)) not in skip]
            if not sp.results:
                continue
            links = self._associations(spec, [str(r["id"]) for r in sp.results]) if spec.associations else {}
            records = [rec for obj in sp.results
                       for rec in to_record(self.context.source, spec, obj, links.get(str(obj["id"]), {}))]
            new_state = {k: v for k, v in state.items() if k in ("swept_ms", "archived_after", "sweep_started_ms")}
            new_state.update(phase="search", mode=sp.mode, tie_ms=sp.stamp_ms)
            if sp.tie_seen:
                new_state["tie_seen"] = sp.tie_seen
            calls, mark = self._calls() - mark, self._calls()
            yield Page(records, Cursor(modstamp=_dt(sp.stamp_ms or start), last_id=sp.last_id, state=new_state),
                       api_calls=calls)

    def _sweep_archived(self, spec: StreamSpec, cursor: Cursor) -> Iterator[Page]:
        state = dict(cursor.state)
        now_ms = to_ms(self.context.now())
        swept = state.get("swept_ms")
        due = swept is None or now_ms - int(swept) >= self.config.archived_sweep_seconds * 1000
        if not due and "archived_after" not in state:
            return
        sweep_started = int(state.get("sweep_started_ms") or now_ms)
        since = int(swept) - _SWEEP_MARGIN_MS if swept is not None else 0
        pager = ListPager(self.client, spec.name, ["hs_object_id", spec.modstamp], archived=True,
                          after=state.get("archived_after"), limit=self.config.list_page_size)
        mark = self._calls()
        for results, nxt in pager:
            tombstones = []
            for obj in results:
                when = parse_time(obj.get("archivedAt"))
                if when is None or to_ms(when) >= since:
                    tombstones.extend(to_record(self.context.source, spec, obj))
            new_state = dict(state)
            if nxt is not None:
                new_state.update(archived_after=nxt, sweep_started_ms=sweep_started)
            else:
                new_state.pop("archived_after", None)
                new_state.pop("sweep_started_ms", None)
                new_state["swept_ms"] = sweep_started
            if not tombstones and nxt is None and self.config.archived_sweep_seconds == 0:
                return  # sweeping on every run: an empty last page need not move the cursor
            calls, mark = self._calls() - mark, self._calls()
            yield Page(tombstones, Cursor(modstamp=cursor.modstamp, last_id=cursor.last_id, state=new_state),
                       api_calls=calls)

    def _associations(self, spec: StreamSpec, ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        """``{id: {to_type: [ids]}}`` through associations v4 batch reads (100 ids per call).

        Source: https://developers.hubspot.com/docs/api-reference/legacy/crm/associations/associate-records/batch/get-associations
        """
        out: dict[str, dict[str, list[str]]] = {}
        for to_type in spec.associations:
            for start in range(0, len(ids), 100):
                chunk = ids[start:start + 100]
                resp = self.client.post(f"/crm/v4/associations/{spec.name}/{to_type}/batch/read",
                                        json={"inputs": [{"id": i} for i in chunk]})
                if resp.status_code not in (200, 207):
                    raise self.client.error(resp, f"associations {spec.name}->{to_type}", self.context.source)
                for item in resp.json().get("results") or []:
                    to_ids = [str(t["toObjectId"]) for t in item.get("to") or []]
                    out.setdefault(str(item["from"]["id"]), {})[to_type] = to_ids
        return out

    def read_ids(self, stream: str, ids: Sequence[str]) -> Iterator[Page]:
        """Batch re-reads (100 ids per call) after webhooks; missing ids -> tombstones, merged -> aliases.

        Pages carry ``Cursor(state={"phase": "targeted"})``: they do not move the stream's cursor.
        Source (merged ids answer with the survivor): https://developers.hubspot.com/docs/api/crm/contacts
        """
        spec = self._spec(stream)
        props = self.properties_for(stream)
        wanted = list(dict.fromkeys(str(i) for i in ids))
        for start in range(0, len(wanted), 100):
            mark = self._calls()
            chunk = wanted[start:start + 100]
            resp = self.client.post(f"/crm/v3/objects/{spec.name}/batch/read",
                                    json={"properties": props, "inputs": [{"id": i} for i in chunk]})
            if resp.status_code not in (200, 207):
                raise self.client.error(resp, f"batch read {spec.name}", self.context.source)
            results = resp.json().get("results") or []
            links = (self._associations(spec, [str(r["id"]) for r in results])
                     if spec.associations and results else {})
            records: list[SourceRecord] = []
            for obj in results:
                records.extend(to_record(self.context.source, spec, obj, links.get(str(obj["id"]), {})))
            accounted = {r.source_id for r in records}
            now = self.context.now()
            for missing in (i for i in chunk if i not in accounted):
                records.append(SourceRecord(source=self.context.source, object_type=spec.name, source_id=missing,
                                            modstamp=now, deleted=True, merged_into=None))
            yield Page(records, Cursor(state={"phase": "targeted"}), api_calls=self._calls() - mark)

    def list_ids(self, stream: str) -> Iterator[str]:
        spec = self._spec(stream)
        for results, _ in ListPager(self.client, spec.name, ["hs_object_id"]):
            for obj in results:
                yield str(obj["id"])

    # -------------------------------------------------------------------------------------------- writes
    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        return self.writer.write(ops)

    def erase(self, refs: Sequence[RecordRef]) -> list[WriteResult]:
        """GDPR delete contacts (``POST /crm/v3/objects/contacts/gdpr-delete``); archive other objects.

        Source: https://developers.hubspot.com/docs/api-reference/crm-contacts-v3/basic/post-crm-v3-objects-contacts-gdpr-delete
        """
        out = []
        for ref in refs:
            key = f"{ref.object_type}:{ref.source_id}"
            try:
                if ref.object_type == "contacts":
                    resp = self.client.post("/crm/v3/objects/contacts/gdpr-delete",
                                            json={"objectId": ref.source_id})
                else:
                    resp = self.client.request("DELETE", f"/crm/v3/objects/{ref.object_type}/{ref.source_id}")
            except AdapterError as exc:
                out.append(WriteResult(key, False, error=str(exc), retryable=True))
                continue
            if resp.status_code in (200, 204, 404):  # 404: already gone
                out.append(WriteResult(key, True, source_id=ref.source_id))
            else:
                out.append(WriteResult(key, False, error=f"HTTP {resp.status_code}: {resp.text[:200]}",
                                       retryable=resp.status_code >= 500))
        return out

    # ------------------------------------------------------------------------------------------- doctor
    def granted_scopes(self) -> list[str]:
        token = self.client.tokens.access_token()
        if isinstance(self.config.auth, OAuthAuth):
            resp = self.client.get(f"/oauth/v1/access-tokens/{token}")
        else:
            resp = self.client.post("/oauth/v2/private-apps/get/access-token-info", json={"tokenKey": token})
        if resp.status_code != 200:
            raise self.client.error(resp, "token info", self.context.source)
        return list(resp.json().get("scopes") or [])

    def needed_scopes(self, write_objects: Iterable[str] = ()) -> set[str]:
        needed = {READ_SCOPES.get(s, "crm.objects.contacts.read") for s in self.config.streams}
        if any(True for _ in write_objects):
            needed.add("crm.objects.contacts.write")
        return needed

    def check(self, required_fields: Mapping[str, Iterable[str]]) -> list[CheckResult]:
        results: list[CheckResult] = []
        try:
            resp = self.client.get("/crm/v3/objects/contacts", params={"limit": 1})
            results.append(CheckResult("token", resp.status_code == 200, f"HTTP {resp.status_code}"))
        except AdapterError as exc:
            return [CheckResult("token", False, str(exc))]
        required = {k: list(v) for k, v in required_fields.items()}
        try:
            missing = sorted(self.needed_scopes(required) - set(self.granted_scopes()))
            detail = f"missing: {', '.join(missing)}" if missing else "ok"
            results.append(CheckResult("scopes", not missing, detail))
        except AdapterError as exc:
            results.append(CheckResult("scopes", False, str(exc)))
        for object_type, names in required.items():
            try:
                fields = {f.name: f for f in self.describe(object_type)}
            except AdapterError as exc:
                results.append(CheckResult(f"properties {object_type}", False, str(exc)))
                continue
            for name in names:
                info = fields.get(name)
                if info is None:
                    detail = f"property {name!r} does not exist on {object_type}; create it in HubSpot"
                    results.append(CheckResult(f"field {object_type}.{name}", False, detail))
                else:
                    results.append(CheckResult(f"field {object_type}.{name}", info.writable,
                                               "writable" if info.writable else "read-only"))
        return results

    def close(self) -> None:
        self.client.close()
