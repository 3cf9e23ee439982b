"""Initial load, incremental search windows, ties, the 10,000 cap, deletes and merges."""

from __future__ import annotations

import math
from datetime import timedelta

from hubspot_helpers import drain

from cxbridge.adapters import Cursor


def test_initial_load_pages_of_100_and_hands_over_to_search(fake, make_adapter):
    ids = [fake.add("contacts", {"email": f"p{i}@example.com", "firstname": f"P{i}"}) for i in range(250)]
    fake.clock.sleep(1)
    adapter = make_adapter()
    records, cursor, pages = drain(adapter, "contacts")
    assert sorted(r.source_id for r in records) == sorted(ids)
    assert len({r.source_id for r in records}) == 250
    assert fake.count("GET", r"^/crm/v3/objects/contacts$") == math.ceil(250 / 100)
    assert fake.count("POST", "/search$") == 1  # what changed while loading: nothing
    assert [len(p.records) for p in pages] == [100, 100, 50]
    assert cursor.state["phase"] == "search" and cursor.modstamp is not None
    first = next(r for r in records if r.source_id == ids[0])
    assert first.fields["email"] == "p0@example.com" and first.modstamp is not None


def test_initial_load_resumes_after_crash(fake, make_adapter):
    ids = [fake.add("contacts", {"email": f"c{i}@example.com"}) for i in range(230)]
    fake.clock.sleep(1)
    first, cursor, _ = drain(make_adapter(), "contacts", stop_after=1)
    assert cursor.state["phase"] == "list" and cursor.state["after"]
    rest, final, _ = drain(make_adapter(), "contacts", cursor)
    got = [r.source_id for r in first + rest]
    assert sorted(got) == sorted(ids) and len(got) == len(set(got))
    assert final.state["phase"] == "search"


def test_changes_during_the_load_are_read_once(fake, make_adapter):
    ids = [fake.add("contacts", {"email": f"d{i}@example.com"}) for i in range(250)]
    fake.clock.sleep(1)
    adapter = make_adapter()
    records = []
    for n, page in enumerate(adapter.read("contacts", Cursor())):
        records.extend(page.records)
        if n == 0:  # edits while the load runs: one already read, one not yet read
            fake.clock.sleep(1)
            fake.update("contacts", ids[0], {"firstname": "early"})
            fake.update("contacts", ids[-1], {"firstname": "late"})
    latest = {r.source_id: r.fields.get("firstname") for r in records}
    assert latest[ids[0]] == "early" and latest[ids[-1]] == "late" and set(latest) == set(ids)
    versions = [(r.source_id, r.hash()) for r in records]
    assert len(versions) == len(set(versions)), "no record version twice in one run"


def test_incremental_reads_only_changes(fake, make_adapter):
    ids = [fake.add("contacts", {"email": f"i{i}@example.com"}) for i in range(120)]
    fake.clock.sleep(1)
    adapter = make_adapter()
    _, cursor, _ = drain(adapter, "contacts")
    fake.clock.sleep(60)
    for i in ids[:5]:
        fake.update("contacts", i, {"firstname": "Changed"})
    before = len(fake.calls)
    records, cursor2, _ = drain(adapter, "contacts", cursor)
    changed = {r.source_id for r in records}
    assert changed == set(ids[:5])
    assert all(r.fields["firstname"] == "Changed" for r in records)
    assert fake.count("POST", "/search$") >= 1 and len(fake.calls) - before <= 3
    assert cursor2.modstamp > cursor.modstamp
    # nothing changed: O(1) calls, no records
    before = len(fake.calls)
    records, _, _ = drain(adapter, "contacts", cursor2)
    assert {r.source_id for r in records} <= set(ids[:5])  # inclusive boundary only
    assert len(fake.calls) - before <= 2


def test_more_than_10000_changes_complete_without_hitting_the_cap(fake, make_adapter):
    fake.ten_secondly_limit = None
    fake.search_per_second = None
    start = fake.clock.ms()
    ids = [fake.add("contacts", {"email": f"m{i}@example.com"}, at_ms=start + i // 3) for i in range(10_450)]
    cursor = Cursor(modstamp=fake.clock.now() - timedelta(seconds=1), state={"phase": "search"})
    fake.clock.sleep(60)
    adapter = make_adapter(paced=False)
    records, _, _ = drain(adapter, "contacts", cursor)
    got = [r.source_id for r in records]
    assert set(got) == set(ids) and len(got) == len(ids)
    assert 400 not in fake.responses
    assert fake.count("POST", "/search$") <= math.ceil(10_450 / 200) * 1.05 + 2


def test_more_than_10000_records_sharing_one_timestamp(fake, make_adapter):
    fake.ten_secondly_limit = None
    fake.search_per_second = None
    stamp = fake.clock.ms()
    ids = [fake.add("contacts", {"email": f"t{i}@example.com"}, at_ms=stamp) for i in range(10_300)]
    later = [fake.add("contacts", {"email": f"l{i}@example.com"}, at_ms=stamp + 5) for i in range(3)]
    cursor = Cursor(modstamp=fake.clock.now() - timedelta(seconds=1), state={"phase": "search"})
    fake.clock.sleep(60)
    adapter = make_adapter(paced=False)
    records, final, _ = drain(adapter, "contacts", cursor)
    got = [r.source_id for r in records]
    assert set(got) == set(ids + later) and len(got) == len(set(got))
    assert 400 not in fake.responses
    assert final.last_id == later[-1] or final.modstamp.timestamp() * 1000 >= stamp + 5


def test_tie_drain_resumes_by_id_after_crash(fake, make_adapter):
    fake.ten_secondly_limit = None
    fake.search_per_second = None
    stamp = fake.clock.ms()
    ids = [fake.add("contacts", {"email": f"r{i}@example.com"}, at_ms=stamp) for i in range(700)]
    cursor = Cursor(modstamp=fake.clock.now() - timedelta(seconds=1), state={"phase": "search"})
    fake.clock.sleep(60)
    seen, cursor, _ = drain(make_adapter(paced=False), "contacts", cursor, stop_after=3)
    assert cursor.state["mode"] == "tie"
    rest, _, _ = drain(make_adapter(paced=False), "contacts", cursor)
    got = [r.source_id for r in seen + rest]
    assert set(got) == set(ids)
    assert len(got) == len(set(got))  # resuming a tie drain by id re-reads nothing


def test_archived_records_become_tombstones(fake, make_adapter):
    ids = [fake.add("contacts", {"email": f"a{i}@example.com"}) for i in range(5)]
    fake.clock.sleep(1)
    adapter = make_adapter(archived_sweep_seconds=0)
    _, cursor, _ = drain(adapter, "contacts")
    fake.clock.sleep(30)
    fake.archive("contacts", ids[1])
    records, _, _ = drain(adapter, "contacts", cursor)
    tomb = [r for r in records if r.deleted]
    assert [t.source_id for t in tomb] == [ids[1]]


def test_merge_yields_alias_record(fake, make_adapter):
    a = fake.add("contacts", {"email": "keep@example.com"})
    b = fake.add("contacts", {"email": "dup@example.com"})
    adapter = make_adapter()
    _, cursor, _ = drain(adapter, "contacts")
    fake.clock.sleep(10)
    fake.merge("contacts", a, b)
    records, _, _ = drain(adapter, "contacts", cursor)
    alias = [r for r in records if r.merged_into]
    assert [(r.source_id, r.merged_into) for r in alias] == [(b, a)]
    assert any(r.source_id == a and not r.deleted for r in records)


def test_search_index_lag_is_absorbed_by_look_back(fake, make_adapter):
    fake.search_index_lag = 20.0
    adapter = make_adapter()
    _, cursor, _ = drain(adapter, "contacts")
    fake.clock.sleep(5)
    late = fake.add("contacts", {"email": "late@example.com"})
    fake.clock.sleep(1)
    records, cursor2, _ = drain(adapter, "contacts", cursor)
    assert late not in {r.source_id for r in records}  # not indexed yet
    fake.clock.sleep(60)
    looked_back = Cursor(modstamp=cursor2.modstamp - timedelta(seconds=300), state={"phase": "search"})
    records, _, _ = drain(adapter, "contacts", looked_back)
    assert late in {r.source_id for r in records}


def test_engagements_carry_their_contact(fake, make_adapter):
    c = fake.add("contacts", {"email": "x@example.com"})
    n = fake.add("notes", {"hs_note_body": "hello", "hs_timestamp": "2024-01-01T00:00:00.000Z"},
                 associations={"contacts": [c]})
    fake.add("calls", {"hs_call_title": "t", "hs_call_direction": "INBOUND"}, associations={"contacts": [c]})
    adapter = make_adapter()
    notes, ncur, _ = drain(adapter, "notes")
    assert notes[0].source_id == n and notes[0].associations == {"contacts": [c]}
    assert notes[0].fields["_cx"]["contact_id"] == c
    calls, _, _ = drain(adapter, "calls")
    assert calls[0].fields["_cx"] == {"contact_id": c, "direction": "inbound"}
    fake.clock.sleep(5)
    fake.update("notes", n, {"hs_note_body": "edited"})
    changed, _, _ = drain(adapter, "notes", ncur)  # search page + associations v4 batch read
    assert changed[0].fields["hs_note_body"] == "edited" and changed[0].associations == {"contacts": [c]}
    assert fake.count("POST", "/crm/v4/associations/notes/contacts/batch/read") == 1


def test_hundreds_of_custom_properties_do_not_overflow_the_url(fake, make_adapter):
    names = [f"custom_property_number_{i:03d}" for i in range(400)]
    for name in names:
        fake.add_property("contacts", name)
    ids = [fake.add("contacts", {"email": f"w{i}@example.com", **{n: f"v{i}" for n in names[:3]},
                                 names[-1]: "last"}) for i in range(150)]
    fake.clock.sleep(1)
    records, _, _ = drain(make_adapter(), "contacts")
    assert 414 not in fake.responses
    assert sorted(r.source_id for r in records) == sorted(ids)
    assert all(r.fields[names[-1]] == "last" and r.fields[names[0]] for r in records)
    assert fake.count("POST", "/contacts/batch/read$") == 2  # one per list page
