"""Pagination strategies: a fresh object per listing (list endpoint, search keyset windows).

List endpoint (initial load, archived sweep)
    ``GET /crm/v3/objects/{type}?limit=100&after=<token>`` -- 100 per page, opaque ``after`` token, not
    subject to the search cap; ``archived=true`` lists archived records.
    Source: https://developers.hubspot.com/docs/api/crm/contacts (list; limit max 100).

Search (incremental)
    ``POST /crm/v3/objects/{type}/search`` with ``limit`` 200, one sort (modstamp ascending).
    Source: https://developers.hubspot.com/docs/api/crm/search -- max 200 per page; a query returns at most
    10,000 results (``after`` >= 10,000 -> 400); filter groups limited; ties in the sort come back in no
    particular order; search is eventually consistent (recent edits may show up late -> the engine's look-back).

    Keyset windows instead of offset paging: every page is a fresh query ``modstamp >= T`` where ``T`` is the
    last modstamp already emitted; records of ``T`` already emitted are skipped by id. This restarts *before*
    every page, so the 10,000 cap is never reached and a record edited while we page (which moves to the end
    of the result set) cannot shift an unseen record out of a page the way offset paging would.
    When a full page holds nothing newer than ``T`` (more records share ``T`` than a page holds -- bulk
    updates), the pager drains ``T`` by id: ``modstamp = T AND hs_object_id > last_id`` sorted by id, which
    completes any number of records sharing one timestamp without looping or skipping, then continues with
    ``modstamp > T``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .client import HubSpotClient

__all__ = ["ListPager", "SearchPage", "SearchPager"]

LIST_LIMIT = 100
SEARCH_LIMIT = 200


class ListPager:
    """Pages of the list endpoint, resumable from an ``after`` token."""

    def __init__(
        self,
        client: HubSpotClient,
        object_type: str,
        properties: Sequence[str],
        *,
        associations: Sequence[str] = (),
        archived: bool = False,
        after: str | None = None,
        limit: int = LIST_LIMIT,
    ) -> None:
        self.client, self.object_type, self.limit = client, object_type, limit
        self.properties, self.associations, self.archived = list(properties), list(associations), archived
        self.after = after
        self._seen_tokens: set[str] = set()

    def __iter__(self) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """Yield ``(results, next_after)``; ``next_after`` is None on the last page."""
        while True:
            params: dict[str, Any] = {"limit": self.limit, "archived": str(self.archived).lower()}
            if self.properties:
                params["properties"] = ",".join(self.properties)
            if self.associations:
                params["associations"] = ",".join(self.associations)
            if self.after:
                params["after"] = self.after
            resp = self.client.get(f"/crm/v3/objects/{self.object_type}", params=params)
            if resp.status_code != 200:
                raise self.client.error(resp, f"list {self.object_type}", self.client.source)
            data = resp.json()
            nxt = ((data.get("paging") or {}).get("next") or {}).get("after")
            if nxt is not None and str(nxt) in self._seen_tokens:  # never follow the same token twice
                raise self.client.error(resp, f"list {self.object_type}: paging token repeated",
                                        self.client.source)
            if nxt is not None:
                self._seen_tokens.add(str(nxt))
            self.after = str(nxt) if nxt is not None else None
            yield list(data.get("results") or []), self.after
            if self.after is None:
                return


@dataclass
class SearchPage:
    """One search answer after de-duplication, with the position after it."""

    results: list[dict[str, Any]]
    stamp_ms: int | None
    last_id: str | None
    mode: str  # "range" (sorted by modstamp) or "tie" (one timestamp, sorted by id)
    #: tie mode: ids of this timestamp emitted earlier (by the range query) above ``last_id``; kept in the
    #: cursor so a resumed drain skips them too (at most one page of ids).
    tie_seen: list[str] = field(default_factory=list)


@dataclass
class SearchPager:
    """Incremental search from ``start_ms`` (inclusive) in keyset windows (see module docs).

    :param tie_after_id: resume draining ``start_ms`` by id after this id (a crash inside a tie drain).
    """

    client: HubSpotClient
    object_type: str
    modstamp_prop: str
    properties: Sequence[str]
    start_ms: int
    tie_after_id: str | None = None
    tie_seen: Sequence[str] = ()
    limit: int = SEARCH_LIMIT
    _seen_at_t: set[str] = field(default_factory=set)

    def _query(self, filters: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
        body = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": list(self.properties),
            "limit": self.limit,
        }
        resp = self.client.post(f"/crm/v3/objects/{self.object_type}/search", json=body, kind="search")
        if resp.status_code != 200:
            raise self.client.error(resp, f"search {self.object_type}", self.client.source)
        return list(resp.json().get("results") or [])

    def stamp_of(self, obj: dict[str, Any]) -> int:
        """The modstamp of a search result in epoch milliseconds."""
        return self._stamp(obj)

    def _stamp(self, obj: dict[str, Any]) -> int:
        from .streams import parse_time, to_ms

        props = obj.get("properties") or {}
        when = parse_time(props.get(self.modstamp_prop)) or parse_time(obj.get("updatedAt"))
        return to_ms(when) if when else 0

    def __iter__(self) -> Iterator[SearchPage]:
        t = self.start_ms
        if self.tie_after_id is not None:
            self._seen_at_t = set(self.tie_seen)
            yield from self._drain_tie(t, self.tie_after_id)
            yield from self._range(t, inclusive=False)
        else:
            yield from self._range(t, inclusive=True)

    def _range(self, t: int, *, inclusive: bool) -> Iterator[SearchPage]:
        while True:
            op = "GTE" if inclusive else "GT"
            results = self._query([{"propertyName": self.modstamp_prop, "operator": op, "value": str(t)}],
                                  self.modstamp_prop)
            fresh = [r for r in results if not (self._stamp(r) == t and str(r["id"]) in self._seen_at_t)]
            if fresh:
                new_t = self._stamp(fresh[-1])
                if new_t != t:
                    self._seen_at_t = set()
                self._seen_at_t.update(str(r["id"]) for r in fresh if self._stamp(r) == new_t)
                t = new_t
                yield SearchPage(fresh, t, str(fresh[-1]["id"]), "range")
            if len(results) < self.limit:
                return
            if not fresh or all(self._stamp(r) == t for r in results):
                # A full page of one timestamp: more may share it than a page holds -- drain it by id.
                yield from self._drain_tie(t, "0")
                inclusive = False
            else:
                inclusive = True

    def _drain_tie(self, t: int, after_id: str) -> Iterator[SearchPage]:
        last = after_id
        while True:
            results = self._query(
                [{"propertyName": self.modstamp_prop, "operator": "EQ", "value": str(t)},
                 {"propertyName": "hs_object_id", "operator": "GT", "value": last}],
                "hs_object_id",
            )
            fresh = [r for r in results if str(r["id"]) not in self._seen_at_t]
            if results:
                last = str(results[-1]["id"])
            self._seen_at_t.update(str(r["id"]) for r in fresh)
            above = sorted((i for i in self._seen_at_t if int(i) > int(last)), key=int) if results else []
            yield SearchPage(fresh, t, last if results else None, "tie", tie_seen=above)
            if len(results) < self.limit:
                return
