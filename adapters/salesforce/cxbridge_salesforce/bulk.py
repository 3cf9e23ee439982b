"""Initial loads through a Bulk API 2.0 query job, streamed page by page and resumable.

Protocol (Bulk API 2.0 Developer Guide, "Create a Query Job", "Get Information About a Query Job",
"Get Results for a Query Job", https://developer.salesforce.com/docs/platform/api-asynch/guide/query-get-job-results.html):

1. ``POST /jobs/query`` ``{"operation": "queryAll", "query": ...}`` -> job in state ``UploadComplete``;
2. ``GET /jobs/query/{id}`` until ``JobComplete`` (``InProgress`` meanwhile; ``Failed`` / ``Aborted`` end it);
3. ``GET /jobs/query/{id}/results?locator=&maxRecords=`` -> CSV (header row + rows), the ``Sforce-Locator``
   header naming the next set (the string ``null`` after the last one) and ``Sforce-NumberOfRecords``.
   "As long as the associated job exists, the locator string for a set of results does not change. You can
   use the locator to retrieve a set of results multiple times."

That last guarantee makes the load resumable: each yielded page carries ``{job_id, locator, offset}`` in
:attr:`Cursor.state` (``offset`` = rows of that result set already committed), so a restart fetches the same
set again and skips what was committed. The CSV is parsed while it downloads, ``page_size`` rows at a time,
so memory stays flat in the number of rows.

The job selects ``SystemModstamp <= until`` (``until`` = the job's start); the final page's cursor is
``(until, None)``, so the first incremental run picks up everything changed while the job ran.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import requests
from simple_salesforce.util import exception_handler

from cxbridge.adapters import Cursor, Page
from cxbridge.errors import AdapterError, RemoteError
from cxbridge.models import SourceRecord

from .client import SalesforceClient
from .records import csv_converter, to_record
from .soql import format_datetime, parse_datetime

__all__ = ["BulkReader"]

log = logging.getLogger(__name__)

_TERMINAL_FAILED = ("Failed", "Aborted")


def _apply(convert: Any, value: str) -> Any:
    return convert(value)


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Decode a byte stream to lines that keep their line ends (csv needs them for quoted newlines)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    buffer = ""
    for chunk in chunks:
        buffer += decoder.decode(chunk)
        start = 0
        while True:
            end = buffer.find("\n", start)
            if end < 0:
                break
            yield buffer[start : end + 1]
            start = end + 1
        buffer = buffer[start:]
    buffer += decoder.decode(b"", final=True)
    if buffer:
        yield buffer


class BulkReader:
    """One object's Bulk API 2.0 query job.

    :param client: the connection.
    :param source: source name.
    :param object_type: the sObject.
    :param fields: fields to select.
    :param field_types: describe types, to type the CSV values like the REST JSON.
    """

    def __init__(
        self,
        client: SalesforceClient,
        source: str,
        object_type: str,
        fields: Sequence[str],
        field_types: Mapping[str, str],
        *,
        page_size: int,
        max_records: int | None,
        poll_seconds: float,
        poll_max_seconds: float,
        timeout_seconds: float,
        sleep: Any,
    ) -> None:
        self.client = client
        self.source = source
        self.object_type = object_type
        self.fields = list(fields)
        self.field_types = dict(field_types)
        self.page_size = page_size
        self.max_records = max_records
        self.poll_seconds = poll_seconds
        self.poll_max_seconds = poll_max_seconds
        self.timeout_seconds = timeout_seconds
        self.sleep = sleep

    # -- job -------------------------------------------------------------------------------------------------

    def create_job(self, until: datetime) -> str:
        soql = (
            f"SELECT {', '.join(self.fields)} FROM {self.object_type} "
            f"WHERE SystemModstamp <= {format_datetime(until)}"
        )
        body = {"operation": "queryAll", "query": soql, "contentType": "CSV", "columnDelimiter": "COMMA",
                "lineEnding": "LF"}
        job: dict[str, Any] = self.client.call(
            lambda sf: sf.restful("jobs/query", method="POST", data=json.dumps(body)) or {},
            what=f"bulk create {self.object_type}",
        )
        log.info("bulk query job created", extra={"source": self.source, "job_id": job["id"]})
        return str(job["id"])

    def wait(self, job_id: str) -> None:
        """Poll until ``JobComplete``; raise :class:`RemoteError` on ``Failed`` / ``Aborted`` / timeout."""
        delay = self.poll_seconds
        waited = 0.0
        while True:
            info: dict[str, Any] = self.client.call(
                lambda sf: sf.restful(f"jobs/query/{job_id}") or {}, what="bulk job status"
            )
            state = info.get("state")
            if state == "JobComplete":
                return
            if state in _TERMINAL_FAILED:
                raise RemoteError(
                    f"bulk query job {job_id} on {self.object_type} ended {state}: "
                    f"{info.get('errorMessage') or 'no message'}",
                    source=self.source,
                    kind="transient",
                    body=json.dumps(info)[:500],
                )
            if waited >= self.timeout_seconds:
                raise RemoteError(f"bulk query job {job_id} still {state} after {waited:.0f}s",
                                  source=self.source, kind="transient")
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, self.poll_max_seconds)

    # -- results ---------------------------------------------------------------------------------------------

    def _results(self, job_id: str, locator: str) -> Any:
        url = f"{self.client.base_url}jobs/query/{job_id}/results"
        params: dict[str, Any] = {}
        if locator:
            params["locator"] = locator
        if self.max_records:
            params["maxRecords"] = self.max_records

        def fetch(sf: Any) -> Any:
            headers = {**self.client.auth_headers(), "Accept": "text/csv"}
            response = sf.session.get(url, params=params, headers=headers, stream=True,
                                      timeout=self.client.config.timeout_seconds)
            if response.status_code >= 300:
                response.content  # noqa: B018 -- read the error body before classifying it
                exception_handler(response, name="bulk results")
            return response

        return self.client.call(fetch, what=f"bulk results {self.object_type}")

    def _rows(self, response: Any) -> Iterator[dict[str, Any]]:
        reader = csv.reader(_lines(response.iter_content(chunk_size=1 << 16)))
        header = next(reader, None)
        if header is None:
            return
        converters = [csv_converter(self.field_types.get(name)) for name in header]
        for values in reader:
            if not values:
                continue
            yield dict(zip(header, map(_apply, converters, values), strict=False))

    def pages(self, state: dict[str, Any], *, now: datetime, calls_mark: int | None = None) -> Iterator[Page]:
        """Run (or resume, if ``state['bulk']`` is set) the job and yield its pages.

        :param state: the stream's cursor state; ``state['bulk']`` holds the resumable job position.
        :param now: the current time; becomes the job's ``until`` bound for a new job.
        """
        base = {k: v for k, v in state.items() if k != "bulk"}
        job = dict(state.get("bulk") or {})
        mark = self.client.usage.calls if calls_mark is None else calls_mark

        def spent() -> int:
            nonlocal mark
            calls, mark = self.client.usage.calls - mark, self.client.usage.calls
            return calls

        if not job:
            until = now
            job = {"job_id": self.create_job(until), "locator": "", "offset": 0, "until": until.isoformat()}
            # Commit the job id before polling, so a crash resumes this job instead of starting another.
            yield Page([], Cursor(None, None, {**base, "bulk": job}), api_calls=spent())
        until_dt = parse_datetime(job["until"])
        try:
            self.wait(job["job_id"])
        except RemoteError:
            # Forget the job so the next run starts a fresh one; rows already committed are upserted again.
            yield Page([], Cursor(None, None, base), api_calls=spent())
            raise
        locator, offset = str(job.get("locator") or ""), int(job.get("offset") or 0)
        while True:
            attempt = 0
            while True:
                response = self._results(job["job_id"], locator)
                next_locator = response.headers.get("Sforce-Locator") or "null"
                buffer: list[SourceRecord] = []
                consumed = 0
                try:
                    for row in self._rows(response):
                        consumed += 1
                        if consumed <= offset:
                            continue
                        buffer.append(to_record(self.source, self.object_type, row))
                        if len(buffer) >= self.page_size:
                            position = {**job, "locator": locator, "offset": consumed}
                            yield Page(buffer, Cursor(None, None, {**base, "bulk": position}), api_calls=spent())
                            offset, buffer = consumed, []
                    break
                except (requests.RequestException, OSError) as exc:
                    # The connection dropped while the set was downloading: fetch the same set again (its
                    # locator does not change while the job exists) and skip the rows already yielded.
                    attempt += 1
                    if attempt >= self.client.retry.max_attempts:
                        raise AdapterError(
                            f"bulk results of job {job['job_id']}: {type(exc).__name__} after {attempt} attempts",
                            source=self.source, kind="transient",
                        ) from None
                    log.warning("bulk results download broke; fetching the set again",
                                extra={"source": self.source, "job_id": job["job_id"], "rows": offset})
                    self.sleep(self.client.retry.backoff(attempt))
                finally:
                    response.close()
            if next_locator == "null":
                final_state = {**base, "deleted_until": job["until"]}
                yield Page(buffer, Cursor(until_dt, None, final_state), api_calls=spent())
                return
            locator, offset = next_locator, 0
            position = {**job, "locator": locator, "offset": 0}
            if buffer:
                yield Page(buffer, Cursor(None, None, {**base, "bulk": position}), api_calls=spent())
