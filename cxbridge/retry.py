"""Retrying HTTP requests: a tenacity policy inside an httpx transport.

:class:`RetryTransport` wraps another transport the httpx way (``RetryTransport(wrapped=HTTPTransport())``; in
tests ``wrapped=MockTransport(router.handler)``) and sends each request up to ``max_attempts`` times:

- responses are classified by :attr:`RetryPolicy.classify` into ``"retry"``, ``"fatal"`` or ``"ok"``; the
  default retries :attr:`RetryPolicy.retry_statuses` (429, 500, 502, 503, 504; adapters add vendor codes such
  as HubSpot's 423 with :meth:`RetryPolicy.with_statuses`); ``fatal`` and ``ok`` responses are returned at once
  (the adapter turns a fatal answer into an error it can explain);
- :class:`httpx.TransportError` (refused or dropped connections, timeouts) is retried too;
- the wait is :attr:`RetryPolicy.wait_for` (an adapter hook, e.g. HubSpot's ten-secondly policy), else the
  ``Retry-After`` header (seconds or an HTTP date), else exponential backoff with jitter -- always capped at
  ``max_wait``;
- response bodies are read inside the attempt, so a connection dropped mid-body is retried as well;
- after the last attempt the last response is returned (its status tells the adapter what happened), or the
  last transport error is re-raised (``reraise=True``).

Every attempt -- retries included, because vendors count them -- first takes one unit from the optional
:class:`~cxbridge.adapters.RateBudget` and is counted and logged by the optional ``on_attempt`` callback.
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import httpx
import tenacity

if TYPE_CHECKING:
    from .adapters import RateBudget

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "Classification",
    "RecordingSleep",
    "RetryPolicy",
    "RetryTransport",
    "default_classify",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

Classification = Literal["retry", "fatal", "ok"]

#: Statuses retried by default: too many requests and the transient server errors.
DEFAULT_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def default_classify(
    response: httpx.Response, retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
) -> Classification:
    """``retry`` for ``retry_statuses``, ``fatal`` for other 4xx/5xx, else ``ok``."""
    if response.status_code in retry_statuses:
        return "retry"
    if response.status_code >= 400:
        return "fatal"
    return "ok"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date, RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds)


class RecordingSleep:
    """A ``sleep`` that does not sleep but records each requested duration (tests, benchmarks)."""

    def __init__(self, clock: Callable[[float], None] | None = None) -> None:
        self.calls: list[float] = []
        self._advance = clock

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self._advance is not None:
            self._advance(seconds)

    @property
    def total(self) -> float:
        """Seconds that would have been slept."""
        return sum(self.calls)


@dataclass(frozen=True)
class RetryPolicy:
    """How requests are retried.

    :param max_attempts: attempts in total (1 = no retry).
    :param base: first backoff in seconds; doubles with each attempt.
    :param max_wait: cap on any single wait, Retry-After included.
    :param sleep: how to wait (the test kit passes a :class:`RecordingSleep`).
    :param jitter: randomize backoff (equal jitter: between half and all of the exponential delay).
    :param retry_statuses: statuses the default classifier retries.
    :param classify: ``(response) -> "retry" | "fatal" | "ok"``; overrides ``retry_statuses``.
    :param wait_for: ``(response) -> seconds | None``; an adapter's own wait for a retryable answer.
    :param now: current UTC time (for HTTP-date Retry-After values).
    :param rng: random source for jitter (seed it for reproducible tests).
    """

    max_attempts: int = 5
    base: float = 0.5
    max_wait: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    jitter: bool = True
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    classify: Callable[[httpx.Response], Classification] | None = None
    wait_for: Callable[[httpx.Response], float | None] | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base < 0 or self.max_wait < 0:
            raise ValueError("base and max_wait must not be negative")

    @classmethod
    def no_sleep(cls, **kwargs: object) -> RetryPolicy:
        """A policy that never waits: its ``sleep`` is a :class:`RecordingSleep` (``policy.sleep.calls``)."""
        kwargs.setdefault("sleep", RecordingSleep())
        kwargs.setdefault("jitter", False)
        return cls(**kwargs)  # type: ignore[arg-type]

    def with_statuses(self, *statuses: int) -> RetryPolicy:
        """A copy that also retries ``statuses`` (e.g. HubSpot's 423 Locked)."""
        return replace(self, retry_statuses=self.retry_statuses | frozenset(statuses))

    def replace(self, **changes: object) -> RetryPolicy:
        """A copy with ``changes``."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def classify_response(self, response: httpx.Response) -> Classification:
        """Classify ``response`` with :attr:`classify` or the default rule."""
        if self.classify is not None:
            return self.classify(response)
        return default_classify(response, self.retry_statuses)

    def backoff(self, attempt: int) -> float:
        """Exponential delay before retry number ``attempt`` (1-based), jittered and capped."""
        delay = min(self.max_wait, self.base * (2 ** (attempt - 1)))
        if self.jitter:
            delay = self.rng.uniform(delay / 2, delay)
        return delay

    def wait_seconds(self, attempt: int, response: httpx.Response | None) -> float:
        """The wait before the next attempt after ``response`` (None: a transport error)."""
        seconds: float | None = None
        if response is not None:
            if self.wait_for is not None:
                seconds = self.wait_for(response)
            if seconds is None:
                seconds = parse_retry_after(response.headers.get("Retry-After"), self.now())
        if seconds is None:
            seconds = self.backoff(attempt)
        return min(self.max_wait, max(0.0, seconds))


class _RetryableResponse(Exception):
    """Carries a retryable response through tenacity."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"retryable status {response.status_code}")
        self.response = response


#: ``(request, response_or_None, error_or_None, elapsed_seconds, attempt)`` after every attempt.
AttemptHook = Callable[[httpx.Request, "httpx.Response | None", "BaseException | None", float, int], None]


class RetryTransport(httpx.BaseTransport):
    """An httpx transport that retries through ``wrapped`` according to a :class:`RetryPolicy`.

    :param wrapped: the transport that really sends (``httpx.HTTPTransport()``, ``httpx.MockTransport``).
    :param policy: the retry policy (default :class:`RetryPolicy`).
    :param budget: paces every attempt (``budget.acquire(1)`` before sending).
    :param on_attempt: called after every attempt (counting, logging).
    """

    def __init__(
        self,
        wrapped: httpx.BaseTransport | None = None,
        policy: RetryPolicy | None = None,
        *,
        budget: RateBudget | None = None,
        on_attempt: AttemptHook | None = None,
    ) -> None:
        self.wrapped = wrapped if wrapped is not None else httpx.HTTPTransport()
        self.policy = policy or RetryPolicy()
        self.budget = budget
        self.on_attempt = on_attempt

    def _attempt(self, request: httpx.Request, attempt: int) -> httpx.Response:
        if self.budget is not None:
            self.budget.acquire(1)
        started = time.perf_counter()
        try:
            response = self.wrapped.handle_request(request)
            # Read the body inside the attempt: a connection dropped mid-body is then retried like any other
            # transport error, and the connection goes back to the pool before any wait. API answers are
            # pages of JSON, so buffering them costs nothing worth streaming for.
            try:
                response.read()
            finally:
                response.close()
        except httpx.TransportError as exc:
            if self.on_attempt:
                self.on_attempt(request, None, exc, time.perf_counter() - started, attempt)
            raise
        verdict = self.policy.classify_response(response)
        if self.on_attempt:
            self.on_attempt(request, response, None, time.perf_counter() - started, attempt)
        if verdict == "retry":
            raise _RetryableResponse(response)
        return response

    def _wait(self, state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        response = error.response if isinstance(error, _RetryableResponse) else None
        return self.policy.wait_seconds(state.attempt_number, response)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        policy = self.policy
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type((_RetryableResponse, httpx.TransportError)),
            sleep=policy.sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        attempts = itertools.count(1)
        try:
            return retrying(lambda: self._attempt(request, next(attempts)))
        except _RetryableResponse as exc:
            return exc.response

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        what = f"status {error.response.status_code}" if isinstance(error, _RetryableResponse) else repr(error)
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info(
            "retrying after %s in %.2fs (attempt %d of %d)",
            what,
            wait,
            state.attempt_number,
            self.policy.max_attempts,
        )

    def close(self) -> None:
        self.wrapped.close()
