"""Limits and faults: Sforce-Limit-Info, quota share, REQUEST_LIMIT_EXCEEDED, 5xx bursts, dropped connections."""

from __future__ import annotations

import pytest
from sf_helpers import drain, ids

from cxbridge.adapters import Cursor
from cxbridge.errors import AdapterError, QuotaExhausted, RemoteError


def test_limit_info_header_is_tracked(fake, make_adapter):
    fake.insert("Contact", LastName="x")
    fake.api_used = 1234
    adapter = make_adapter()
    drain(adapter, "contacts")
    assert (adapter.client.usage.used, adapter.client.usage.limit) == (fake.api_used, 15000)
    assert adapter.client.usage.calls == fake.api_used - 1234  # logins do not count


def test_stops_cleanly_at_the_configured_share_and_resumes_without_loss(fake, make_adapter):
    seeded = [fake.insert("Contact", LastName=f"L{i}") for i in range(10_000)]
    fake.daily_limit = 100
    fake.api_used = 75  # describe, count, first query -> 78; the 80 % line falls while paging
    committed = []
    cursor = Cursor()
    adapter = make_adapter(quota_share=0.8)
    with pytest.raises(QuotaExhausted) as err:
        for page in adapter.read("contacts", Cursor()):
            committed += [r.source_id for r in page.records]
            cursor = page.cursor
    assert "80%" in str(err.value) and err.value.kind == "transient"
    assert fake.api_used == 80, "no call made past the share"
    assert 0 < len(committed) < len(seeded)
    fake.api_used = 0  # the 24-hour window moved on
    pages, _ = drain(make_adapter(quota_share=0.8), "contacts", cursor)
    rest = ids(pages)
    assert committed + rest == seeded, "no loss, no duplicate across the stop"


def test_request_limit_exceeded_is_quota_not_crash(fake, make_adapter):
    fake.insert("Contact", LastName="x")
    fake.api_used = fake.daily_limit  # the org is already over its allowance (other integrations)
    with pytest.raises(QuotaExhausted) as err:
        drain(make_adapter(quota_share=1.0), "contacts")
    assert err.value.status == 403 and "REQUEST_LIMIT_EXCEEDED" in str(err.value)


def test_5xx_burst_and_dropped_connections_are_retried_with_backoff(fake, make_adapter, sleeps):
    seeded = [fake.insert("Contact", LastName=f"L{i}") for i in range(4100)]
    adapter = make_adapter()
    got = []
    for i, page in enumerate(adapter.read("contacts", Cursor())):
        got += [r.source_id for r in page.records]
        if i == 0:
            fake.fail_next(503, 500, "connection", 502)
    assert got == seeded
    assert len(sleeps) == 4 and all(0 < s <= 60 for s in sleeps)
    assert sleeps[1] >= sleeps[0] / 2, "exponential backoff (with jitter)"


def test_persistent_5xx_gives_up_with_a_transient_error(fake, make_adapter, sleeps):
    fake.insert("Contact", LastName="x")
    adapter = make_adapter(max_attempts=3)
    adapter.client.sf  # noqa: B018 -- log in first
    fake.fail_next(*([503] * 10))
    with pytest.raises(RemoteError) as err:
        drain(adapter, "contacts")
    assert err.value.kind == "transient" and err.value.status == 503
    assert len(sleeps) == 2


def test_dropped_connections_forever_give_a_transient_adapter_error(fake, make_adapter, sleeps):
    adapter = make_adapter(max_attempts=2)
    adapter.client.sf  # noqa: B018
    fake.fail_next(*(["connection"] * 5))
    with pytest.raises(AdapterError) as err:
        drain(adapter, "contacts")
    assert err.value.kind == "transient" and "ConnectionError" in str(err.value)


def test_malformed_query_is_not_retried(fake, make_adapter, sleeps):
    adapter = make_adapter()
    with pytest.raises(RemoteError) as err:
        adapter.client.call(lambda sf: sf.query("SELECT Nope__x FROM Contact"), what="bad query")
    assert err.value.status == 400 and "INVALID_FIELD" in str(err.value)
    assert sleeps == []
