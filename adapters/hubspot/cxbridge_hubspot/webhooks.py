"""The HubSpot webhook receiver: signature v3, replay window, duplicate events, targeted re-reads.

Validation (Source: https://developers.hubspot.com/docs/api/webhooks/validating-requests and
https://developers.hubspot.com/changelog/introducing-version-3-of-webhook-signatures):

- reject when ``X-HubSpot-Request-Timestamp`` (ms) is more than 5 minutes away from now;
- ``X-HubSpot-Signature-v3`` = base64(HMAC-SHA256(client secret, method + URI + raw body + timestamp)), the
  URI being the full URL HubSpot called (set ``webhook_url`` per source when a proxy rewrites it);
- compare in constant time (:func:`hmac.compare_digest`).

Events (subscription types ``contact.creation`` / ``.propertyChange`` / ``.deletion`` / ``.merge`` /
``.restore`` / ``.associationChange`` / ``.privacyDeletion``, the same for company / deal / ticket, and the
generic ``object.*`` with ``objectTypeId``; Source: https://developers.hubspot.com/docs/api/webhooks) become a
:class:`WebhookPlan`: ids to re-read per stream with one batch read each (deletions come back as tombstones,
merged ids as aliases) and contact ids to erase (privacy deletions). Event ids already in the inbox are
ignored (HubSpot retries deliveries), so every event is acted on once.

Wiring: the endpoint finds its :class:`WebhookReceiver` on ``request.app.state.hubspot_webhooks`` (tests and
custom apps set it) or builds one from ``request.app.state.bridge`` (``cxbridge web`` / the daemon: config,
store, adapters). Without either it answers 503.

Answering fast: HubSpot counts a delivery as failed and retries it when the endpoint does not answer in time
(the limit has changed over the years -- 1 s, 2 s, now 5 s -- Source:
https://developers.hubspot.com/docs/api/webhooks, section "Retries"; 400/401/403/404/405 are not retried). The
endpoint therefore only verifies, records the event ids (in a worker thread: the store is blocking I/O) and
answers; the re-reads run afterwards as a background task in the thread pool, never on the event loop. A
failure is stored on the inbox rows (``status = failed``, ``error``) and the next poll catches up anyway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .streams import OBJECT_TYPE_IDS

__all__ = [
    "InboxStore",
    "MemoryInbox",
    "StoreInbox",
    "WebhookPlan",
    "WebhookReceiver",
    "bridge_receiver",
    "plan_events",
    "signed_uri",
    "verify_signature",
    "webhook_endpoint",
]

log = logging.getLogger(__name__)
MAX_AGE_MS = 5 * 60 * 1000
#: An event still ``new`` this long after it arrived was accepted by a process that stopped before finishing.
STALE_AFTER = timedelta(minutes=10)
#: Finished events (``processed``, ``erased``) are kept this long, then deleted: long enough to recognise every
#: redelivery (HubSpot retries a delivery up to 10 times, spread over 24 hours -- Source:
#: https://developers.hubspot.com/docs/api/webhooks, "Retries"), short enough that the inbox does not keep
#: property values (emails, names) for ever nor grow with every change ever made in the CRM.
RETENTION = timedelta(days=7)
#: how often a receiver deletes expired events of a source (checked when it finishes processing a delivery)
PRUNE_EVERY = timedelta(hours=1)
_LEGACY = {"contact": "contacts", "company": "companies", "deal": "deals", "ticket": "tickets"}


#: URL-encoded characters HubSpot decodes before signing the URI (request-validation docs, v3 signature).
_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
           "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
_ENCODED = re.compile("|".join(_DECODE), re.IGNORECASE)


def signed_uri(uri: str) -> str:
    """The URI as HubSpot signs it (a fixed set of percent-escapes decoded)."""
    return _ENCODED.sub(lambda m: _DECODE[m.group(0).upper()], uri)


def verify_signature(*, secret: str, method: str, uri: str, body: bytes, timestamp: str, signature: str,
                     now_ms: int, max_age_ms: int = MAX_AGE_MS) -> str | None:
    """None when the request is authentic and fresh, else the reason it is not."""
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return "missing or malformed X-HubSpot-Request-Timestamp"
    if abs(now_ms - stamp) > max_age_ms:
        return "timestamp outside the 5-minute window"
    message = f"{method}{signed_uri(uri)}".encode() + body + timestamp.encode()
    expected = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected.encode(), (signature or "").encode()):
        return "signature mismatch"
    return None


@dataclass
class WebhookPlan:
    """What a batch of events asks for."""

    reread: dict[str, list[str]] = field(default_factory=dict)
    erase: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)

    def add(self, stream: str, *ids: Any) -> None:
        bucket = self.reread.setdefault(stream, [])
        for i in ids:
            if i is not None and str(i) not in bucket:
                bucket.append(str(i))


def _stream_of(event: Mapping[str, Any]) -> tuple[str | None, str]:
    kind = str(event.get("subscriptionType") or "")
    prefix, _, action = kind.partition(".")
    if prefix == "object":
        return OBJECT_TYPE_IDS.get(str(event.get("objectTypeId") or "")), action
    return _LEGACY.get(prefix), action


def plan_events(events: Iterable[Mapping[str, Any]], streams: Iterable[str] | None = None) -> WebhookPlan:
    """Turn webhook events into re-reads and erasures (unknown types and streams are ignored)."""
    wanted = set(streams) if streams is not None else None
    plan = WebhookPlan()
    for event in events:
        stream, action = _stream_of(event)
        plan.event_ids.append(str(event.get("eventId")))
        if stream is None or (wanted is not None and stream not in wanted):
            continue
        if action == "privacyDeletion":
            plan.erase.append(str(event.get("objectId")))
            plan.add(stream, event.get("objectId"))
        elif action == "merge":
            plan.add(stream, event.get("primaryObjectId") or event.get("objectId"), event.get("newObjectId"),
                     *(event.get("mergedObjectIds") or []))
        elif action in ("creation", "propertyChange", "deletion", "restore", "associationChange"):
            plan.add(stream, event.get("objectId"))
    return plan


class InboxStore(Protocol):
    """Remembers webhook event ids (duplicates are ignored) and their processing status."""

    def add(self, source: str, event_id: str, payload: Any, now: datetime) -> bool:
        """Record the event; False when it was seen before."""
        ...

    def mark(self, source: str, event_ids: Iterable[str], status: str, now: datetime,
             error: str | None = None) -> None:
        ...

    def unfinished(self, source: str, received_before: datetime) -> list[Any]:
        """Payloads of events that ``failed``, or stayed ``new`` since before ``received_before`` (their
        process died before finishing); oldest first."""
        ...

    # Optional: ``prune(source, finished_before) -> int`` deletes the events of ``source`` that were processed
    # (or erased) before ``finished_before`` and returns how many; a store without it keeps everything.


#: statuses of events nothing will process again (``erased``: redacted by ``cxbridge forget``)
_FINISHED = ("processed", "erased")


class MemoryInbox:
    """An in-process :class:`InboxStore` (tests, single-shot tools)."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, source: str, event_id: str, payload: Any, now: datetime) -> bool:
        if (source, event_id) in self.events:
            return False
        self.events[(source, event_id)] = {"payload": payload, "status": "new", "error": None, "received": now}
        return True

    def unfinished(self, source: str, received_before: datetime) -> list[Any]:
        return [e["payload"] for (src, _), e in self.events.items() if src == source and (
            e["status"] == "failed" or (e["status"] == "new" and e["received"] < received_before))]

    def mark(self, source: str, event_ids: Iterable[str], status: str, now: datetime,
             error: str | None = None) -> None:
        for event_id in event_ids:
            if (source, event_id) in self.events:
                self.events[(source, event_id)].update(status=status, error=error, finished=now)

    def prune(self, source: str, finished_before: datetime) -> int:
        old = [key for key, e in self.events.items() if key[0] == source and e["status"] in _FINISHED
               and e.get("finished") is not None and e["finished"] < finished_before]
        for key in old:
            del self.events[key]
        return len(old)


class StoreInbox:
    """The store's ``inbox`` table (unique ``(source, event_id)``) as :class:`InboxStore`."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def add(self, source: str, event_id: str, payload: Any, now: datetime) -> bool:
        from sqlalchemy import insert
        from sqlalchemy.exc import IntegrityError

        from cxbridge.store import schema

        try:
            with self.store.begin() as conn:
                conn.execute(insert(schema.inbox).values(source=source, event_id=event_id, payload=payload,
                                                         status="new", received_at=now))
        except IntegrityError:
            return False
        return True

    def mark(self, source: str, event_ids: Iterable[str], status: str, now: datetime,
             error: str | None = None) -> None:
        from sqlalchemy import update

        from cxbridge.store import schema

        ids = list(event_ids)
        if not ids:
            return
        t = schema.inbox
        with self.store.begin() as conn:
            conn.execute(update(t).where(t.c.source == source, t.c.event_id.in_(ids))
                         .values(status=status, processed_at=now, error=error))

    def prune(self, source: str, finished_before: datetime) -> int:
        from sqlalchemy import delete

        from cxbridge.store import schema

        t = schema.inbox
        with self.store.begin() as conn:
            result = conn.execute(delete(t).where(t.c.source == source, t.c.status.in_(_FINISHED),
                                                  t.c.processed_at < finished_before))
        return int(result.rowcount or 0)

    def unfinished(self, source: str, received_before: datetime) -> list[Any]:
        from sqlalchemy import and_, or_, select

        from cxbridge.store import schema

        t = schema.inbox
        with self.store.connect() as conn:
            return list(conn.execute(
                select(t.c.payload).where(t.c.source == source, or_(
                    t.c.status == "failed", and_(t.c.status == "new", t.c.received_at < received_before)))
                .order_by(t.c.id)).scalars())


Dispatch = Callable[[str, WebhookPlan], None]


class WebhookReceiver:
    """Verifies, de-duplicates and dispatches HubSpot webhook deliveries for any number of sources.

    :param secret_for: source name -> signing secret (None: unknown source -> 404).
    :param inbox: where event ids are remembered.
    :param dispatch: ``(source, plan)`` -> performs the re-reads / erasures (runs after the response).
    :param now: the clock.
    :param url_for: source name -> the public URL HubSpot calls, when it differs from what the server sees.
    :param streams_for: source name -> the streams it syncs (events of other objects are ignored).
    :param retention: finished events older than this are deleted (at most every :data:`PRUNE_EVERY` per
        source, after a delivery was processed); None keeps them.
    """

    def __init__(self, *, secret_for: Callable[[str], str | None], inbox: InboxStore, dispatch: Dispatch,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 url_for: Callable[[str], str | None] = lambda source: None,
                 streams_for: Callable[[str], Iterable[str] | None] = lambda source: None,
                 retention: timedelta | None = RETENTION) -> None:
        self.secret_for, self.inbox, self.dispatch, self.now = secret_for, inbox, dispatch, now
        self.retention = retention
        self.pruned = 0
        self._pruned_at: dict[str, datetime] = {}
        self.url_for, self.streams_for = url_for, streams_for
        self.rejected = 0
        self.duplicates = 0
        self.processed = 0
        self.failed = 0
        self._busy = 0
        self._idle = threading.Condition()
        self._recovered: set[str] = set()

    async def __call__(self, request: Any) -> Any:
        from starlette.background import BackgroundTasks
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        source = request.path_params.get("source", "")
        secret = self.secret_for(source)
        if not secret:
            return JSONResponse({"error": f"no HubSpot source {source!r} with a webhook secret"}, status_code=404)
        body = await request.body()
        uri = self.url_for(source) or str(request.url)
        now = self.now()
        reason = verify_signature(
            secret=secret, method=request.method, uri=uri, body=body,
            timestamp=request.headers.get("X-HubSpot-Request-Timestamp", ""),
            signature=request.headers.get("X-HubSpot-Signature-v3", ""),
            now_ms=int(now.timestamp() * 1000),
        )
        if reason is not None:
            self.rejected += 1
            log.warning("hubspot webhook rejected", extra={"source": source, "reason": reason})
            return JSONResponse({"error": reason}, status_code=401)
        try:
            events = json.loads(body or b"[]")
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if isinstance(events, dict):
            events = [events]
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            return JSONResponse({"error": "body is not a list of event objects"}, status_code=400)
        fresh = await run_in_threadpool(self._record, source, events, now)
        self.duplicates += len(events) - len(fresh)
        plan = plan_events(fresh, self.streams_for(source))
        tasks = BackgroundTasks()  # sync callables: they run in the thread pool, after the answer
        if source not in self._recovered:  # the first authentic delivery since start: finish what was left
            self._recovered.add(source)
            with self._idle:
                self._busy += 1
            tasks.add_task(self._recover, source)
        if plan.event_ids:
            with self._idle:
                self._busy += 1
            tasks.add_task(self.process, source, plan)
        return JSONResponse({"accepted": len(fresh), "duplicates": len(events) - len(fresh)}, background=tasks)

    def _record(self, source: str, events: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        """The events not seen before (each recorded in the inbox)."""
        return [e for e in events if self.inbox.add(source, str(e.get("eventId")), e, now)]

    def process(self, source: str, plan: WebhookPlan) -> None:
        """Run ``dispatch`` and record the outcome on the inbox rows (never raises)."""
        try:
            try:
                self.dispatch(source, plan)
            except Exception as exc:  # the events stay in the inbox as failed; the next poll catches up anyway
                log.exception("hubspot webhook processing failed", extra={"source": source})
                self.failed += len(plan.event_ids)
                self._mark(source, plan.event_ids, "failed", f"{type(exc).__name__}: {exc}"[:2000])
                return
            self.processed += len(plan.event_ids)
            self._mark(source, plan.event_ids, "processed", None)
            self._prune(source)
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _mark(self, source: str, event_ids: list[str], status: str, error: str | None) -> None:
        try:
            self.inbox.mark(source, event_ids, status, self.now(), error)
        except Exception:  # the store is gone: the rows stay 'new', which the log makes visible
            log.exception("could not record webhook status %s", status, extra={"source": source})

    def _prune(self, source: str) -> None:
        """Delete the source's finished events older than ``retention`` (at most every ``PRUNE_EVERY``)."""
        prune = getattr(self.inbox, "prune", None)
        if self.retention is None or prune is None:
            return
        now = self.now()
        last = self._pruned_at.get(source)
        if last is not None and now - last < PRUNE_EVERY:
            return
        self._pruned_at[source] = now
        try:
            removed = prune(source, now - self.retention)
        except Exception:  # the store is unavailable: the next delivery tries again after PRUNE_EVERY
            log.exception("hubspot webhooks: deleting expired events failed", extra={"source": source})
            return
        self.pruned += removed
        if removed:
            log.info("hubspot webhooks: deleted %d event(s) finished before the retention window", removed,
                     extra={"source": source})

    def recover(self, source: str, *, stale_after: timedelta = STALE_AFTER) -> int:
        """Process again the events of ``source`` that failed, or were accepted but never finished (the process
        stopped first) more than ``stale_after`` ago; returns how many. Runs once per source after the first
        authentic delivery; call it yourself from a scheduler for more. Privacy deletions depend on it: a
        poll re-reads changed records anyway, but nothing else would erase the person."""
        events = self.inbox.unfinished(source, self.now() - stale_after)
        if not events:
            return 0
        plan = plan_events(events, self.streams_for(source))
        log.info("hubspot webhooks: retrying %d unfinished event(s)", len(plan.event_ids),
                 extra={"source": source})
        with self._idle:
            self._busy += 1
        self.process(source, plan)
        return len(plan.event_ids)

    def _recover(self, source: str) -> None:
        try:
            self.recover(source)
        except Exception:  # the store is unavailable: the next start tries again
            log.exception("hubspot webhooks: recovering unfinished events failed", extra={"source": source})
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no accepted delivery is still being processed; False on timeout (tests, shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)


def bridge_receiver(bridge: Any) -> WebhookReceiver:
    """A receiver on the daemon's bridge: secrets from the config, the store's inbox, and

    - re-reads applied at once with ``bridge.sync_ids(source, stream, ids)`` (one batch read per stream, the
      cursor untouched); with an older core, handed to ``bridge.ingest_pages(source, stream, pages)`` when it
      offers that; otherwise the ids are queued in the source's state and re-read first by the stream's next
      incremental run;
    - privacy deletions erased with ``bridge.erase_source_records(source, object_type, ids)`` when offered,
      else through ``bridge.forget`` on the golden customer linked to the contact.
    """

    def connection(source: str) -> Any:
        src = bridge.config.sources.get(source)
        return src.connection if src is not None and src.adapter == "hubspot" else None

    def secret_for(source: str) -> str | None:
        conn = connection(source)
        return conn.signing_secret() if conn is not None else None

    def dispatch(source: str, plan: WebhookPlan) -> None:
        if plan.erase:
            erase = getattr(bridge, "erase_source_records", None)
            if erase is not None:
                erase(source, "contacts", plan.erase)
            else:
                _forget_contacts(bridge, source, plan.erase)
        sync_ids = getattr(bridge, "sync_ids", None)
        ingest = getattr(bridge, "ingest_pages", None)
        for stream, ids in plan.reread.items():
            if sync_ids is not None:
                outcome = sync_ids(source, stream, ids)
                log.info("hubspot webhook re-read %d %s, %d changed", getattr(outcome, "read", 0), stream,
                         getattr(outcome, "changed", 0), extra={"source": source})
            elif ingest is not None:
                ingest(source, stream, bridge.adapter(source).read_ids(stream, ids))
            else:
                from cxbridge.store.state import SourceState

                from .adapter import queue_rereads

                queue_rereads(SourceState(bridge.store, source), stream, ids)

    return WebhookReceiver(
        secret_for=secret_for, inbox=StoreInbox(bridge.store), dispatch=dispatch,
        url_for=lambda s: getattr(connection(s), "webhook_url", None),
        streams_for=lambda s: getattr(connection(s), "streams", None),
    )


def _forget_contacts(bridge: Any, source: str, ids: Iterable[str]) -> None:
    from cxbridge.errors import NotFound

    for contact_id in ids:
        try:
            customer_id = bridge.find_customer_id(f"{source}/{contact_id}")
        except NotFound:
            continue  # never synced: nothing of the person is stored
        bridge.forget(customer_id)
        log.info("hubspot privacy deletion erased a customer", extra={"source": source})


async def webhook_endpoint(request: Any) -> Any:
    """``POST /webhooks/hubspot/{source}`` (registered through ``register_routes``)."""
    from starlette.responses import JSONResponse

    state = request.app.state
    receiver = getattr(state, "hubspot_webhooks", None)
    if receiver is None and getattr(state, "bridge", None) is not None:
        receiver = state.hubspot_webhooks = bridge_receiver(state.bridge)
    if receiver is None:
        return JSONResponse({"error": "HubSpot webhooks are not configured in this app"}, status_code=503)
    return await receiver(request)
