"""Faults: 429 storms, 5xx bursts, connection drops, token expiry mid-run, records changing while paging."""

from __future__ import annotations

import pytest
from cxbridge_hubspot.auth import STATE_REFRESH_TOKEN
from hubspot_helpers import drain

from cxbridge.errors import QuotaExhausted

OAUTH = {"type": "oauth", "client_id": "client-1", "client_secret": "secret-1", "refresh_token": "rt-0"}


def _seed(fake, n, prefix="r"):
    ids = [fake.add("contacts", {"email": f"{prefix}{i}@example.com"}) for i in range(n)]
    fake.clock.sleep(1)
    return ids


def _assert_exactly(records, ids):
    got = [r.source_id for r in records if not r.deleted]
    assert sorted(got) == sorted(ids), "lost or foreign records"
    assert len(got) == len(set(got)), "duplicates"


def test_429_storm_waits_the_interval_and_loses_nothing(fake, make_adapter):
    ids = _seed(fake, 450)
    fake.fail("429:TEN_SECONDLY_ROLLING", times=6, path="/crm/v3/objects/contacts$")
    slept = fake.clock.slept
    records, _, _ = drain(make_adapter(), "contacts")
    _assert_exactly(records, ids)
    assert fake.responses.count(429) == 6
    assert fake.clock.slept - slept >= 6 * 10.0  # waited the ten-second interval each time


def test_secondly_429_on_search_waits_about_a_second(fake, make_adapter):
    ids = _seed(fake, 10)
    adapter = make_adapter()
    _, cursor, _ = drain(adapter, "contacts")
    fake.clock.sleep(5)
    for i in ids[:3]:
        fake.update("contacts", i, {"firstname": "x"})
    fake.fail("429:SECONDLY", times=2, path="/search$")
    slept = fake.clock.slept
    records, _, _ = drain(adapter, "contacts", cursor)
    assert {r.source_id for r in records} == set(ids[:3])
    assert 2.0 <= fake.clock.slept - slept < 5.0


def test_daily_limit_stops_the_stream_cleanly_and_resumes(fake, make_adapter):
    ids = _seed(fake, 350)
    adapter = make_adapter()
    fake.fail("429:DAILY", times=1, path="/crm/v3/objects/contacts$")
    first: list = []
    cursor = None
    with pytest.raises(QuotaExhausted) as info:
        for page in adapter.read("contacts", __import__("cxbridge.adapters").adapters.Cursor()):
            first.extend(page.records)
            cursor = page.cursor
    assert info.value.resets_at is not None and "daily" in str(info.value).lower()
    assert fake.responses.count(429) == 1  # not retried
    calls = len(fake.calls)
    with pytest.raises(QuotaExhausted):  # a restart within the pause makes no call at all
        drain(make_adapter(), "contacts", cursor)
    assert len(fake.calls) == calls
    fake.clock.sleep(3601)
    rest, _, _ = drain(make_adapter(), "contacts", cursor)
    _assert_exactly(first + rest, ids)


def test_configured_daily_share_stops_before_hubspot_does(fake, make_adapter):
    _seed(fake, 50)
    fake.daily_limit = 100
    fake._daily_used = 94
    adapter = make_adapter(daily_quota_share=0.95)
    with pytest.raises(QuotaExhausted):
        drain(adapter, "contacts")
    assert fake._daily_used <= 96


def test_remaining_zero_from_other_integrations_pauses(fake, make_adapter):
    ids = _seed(fake, 250)
    other = [fake.clock.t] * 98  # another integration used 98 of the portal's 100 in this window

    def busy_portal(request):
        fake._window.extend(other)
        other.clear()

    fake.hooks.append(busy_portal)
    slept = fake.clock.slept
    records, _, _ = drain(make_adapter(), "contacts")
    _assert_exactly(records, ids)
    assert fake.clock.slept - slept >= 1.0  # paused on X-HubSpot-RateLimit-Remaining: 0


def test_5xx_burst_423_477_and_connection_drops_are_retried(fake, make_adapter):
    ids = _seed(fake, 320)
    fake.fail(502, times=2, path="/crm/v3/objects/contacts$")
    fake.fail(423, times=1)
    fake.fail(477, times=1)
    fake.fail("connect", times=3)
    fake.fail("read", times=1, method="GET")
    records, _, _ = drain(make_adapter(), "contacts")
    _assert_exactly(records, ids)
    assert fake.attempts - len(fake.calls) == 4  # four attempts never reached the server


def test_create_is_not_repeated_after_a_read_error(fake, make_adapter):
    from cxbridge.adapters import WriteOp

    c = fake.add("contacts", {"email": "t@example.com"})
    fake.fail("read", times=1, path="/tasks/batch/create")
    adapter = make_adapter()
    [res] = adapter.write([WriteOp(key="t", object_type="task", action="create", fields={"subject": "s"},
                                   associations={"contacts": [c]})])
    assert not res.ok and res.retryable
    fake.fail("connect", times=1, path="/tasks/batch/create")  # never sent: safe to repeat at once
    [res] = adapter.write([WriteOp(key="t", object_type="task", action="create", fields={"subject": "s"},
                                   associations={"contacts": [c]})])
    assert res.ok and len(fake.objects["tasks"]) == 1


def test_oauth_refreshes_ahead_of_expiry_and_persists_rotation(fake, make_adapter, state):
    ids = _seed(fake, 30)
    adapter = make_adapter(auth=OAUTH)
    records, cursor, _ = drain(adapter, "contacts")
    _assert_exactly(records, ids)
    rotated = state.get(STATE_REFRESH_TOKEN)  # rotated by HubSpot, persisted
    assert rotated != "rt-0" and fake.refresh_tokens == {rotated}
    fake.clock.sleep(1800 - 200)  # inside the refresh margin: refresh before HubSpot says expired
    drain(adapter, "contacts", cursor)
    assert 401 not in fake.responses
    assert adapter.client.tokens.refreshes == 2
    # a restart uses the rotated refresh token, not the stale one from the config
    fresh = make_adapter(auth=OAUTH)
    drain(fresh, "contacts", cursor)
    assert fresh.client.tokens.refreshes == 1 and 400 not in fake.responses
    from cxbridge.secrets import redact

    token = fresh.client.tokens.access_token()
    assert token not in redact(f"GET /oauth/v1/access-tokens/{token} failed")  # redacted in logs
    assert rotated not in redact(f"refresh_token {rotated}")


def test_token_expiry_mid_run_refreshes_once(fake, make_adapter):
    ids = _seed(fake, 500)
    adapter = make_adapter(auth=OAUTH)
    tokens = adapter.client.tokens

    def revoke(request):  # HubSpot expires the token early (clock skew): 401 EXPIRED_AUTHENTICATION
        if len(fake.calls) == 2:
            for token in fake.access_tokens:
                fake.access_tokens[token] = 0

    fake.hooks.append(revoke)
    records, _, _ = drain(adapter, "contacts")
    _assert_exactly(records, ids)
    assert fake.responses.count(401) == 1 and tokens.refreshes == 2


def test_records_changed_while_paging_are_not_lost(fake, make_adapter):
    ids = _seed(fake, 600)
    adapter = make_adapter()
    _, cursor, _ = drain(adapter, "contacts")
    fake.clock.sleep(10)
    for i, cid in enumerate(ids):  # 600 changes, one millisecond apart
        fake.update("contacts", cid, {"firstname": "v1"}, at_ms=fake.clock.ms() + i)
    fake.clock.sleep(5)
    edits = iter(ids[:250])

    def edit_while_paging(request):  # between search pages, a user edits records we have not read yet
        if request.url.path.endswith("/search"):
            for _ in range(3):
                cid = next(edits, None)
                if cid is not None:
                    fake.update("contacts", cid, {"firstname": "v2"})

    fake.hooks.append(edit_while_paging)
    records, _, _ = drain(adapter, "contacts", cursor)
    latest = {r.source_id: r.fields["firstname"] for r in records}  # upsert by id
    assert set(latest) == set(ids)
    assert all(latest[cid] == fake.get("contacts", cid)["firstname"] for cid in ids)
