"""Incremental reads: queryAll keyset on (SystemModstamp, Id), nextRecordsUrl paging, ties, deletes, merges."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sf_helpers import drain, ids

from cxbridge.adapters import Cursor
from cxbridge.errors import ConfigError


def test_initial_load_pages_by_2000_with_next_records_url(fake, make_adapter):
    seeded = [fake.insert("Contact", LastName=f"L{i}", Email=f"p{i}@example.com") for i in range(4500)]
    adapter = make_adapter(bulk_threshold=10_000)
    pages, cursor = drain(adapter, "contacts")
    data_pages = [p for p in pages if p.records]
    assert [len(p.records) for p in data_pages] == [2000, 2000, 500]
    assert ids(pages) == seeded
    # 1 describe + 1 COUNT() + 1 queryAll + 2 nextRecordsUrl follow-ups
    assert fake.calls(r"GET sobjects/Contact/describe") == 1
    assert fake.calls(r"GET queryAll") == 2
    assert fake.calls(r"GET query/01g") == 2
    assert fake.api_used == 5
    assert sum(p.api_calls for p in pages) == fake.api_used, "pages account for every API call"
    last = data_pages[-1].records[-1]
    assert (cursor.modstamp, cursor.last_id) == (last.modstamp, last.source_id)
    assert cursor.state.get("deleted_until")


def test_incremental_reads_only_changes_and_costs_constant_calls(fake, make_adapter):
    seeded = [fake.insert("Contact", LastName=f"L{i}") for i in range(300)]
    adapter = make_adapter()
    _, cursor = drain(adapter, "contacts")
    fake.tick(120)
    before = fake.api_used
    pages, cursor2 = drain(adapter, "contacts", cursor)
    assert ids(pages) == []
    assert fake.api_used - before == 2  # one queryAll + one deleted/ check
    fake.tick(5)
    fake.update("Contact", seeded[10], LastName="Changed")
    fake.touch("Contact", seeded[20])  # system-only change: LastModifiedDate does not move, SystemModstamp does
    pages, _ = drain(adapter, "contacts", cursor2)
    assert ids(pages) == [seeded[10], seeded[20]]
    assert pages[0].records[0].fields["LastName"] == "Changed"


def test_ties_at_one_timestamp_across_pages_neither_loop_nor_skip(fake, make_adapter):
    seeded = [fake.insert("Contact", LastName=f"T{i}") for i in range(5000)]  # all share one SystemModstamp
    adapter = make_adapter()
    gen = adapter.read("contacts", Cursor())
    first = next(gen)
    gen.close()  # crash after committing page 1 (2,000 rows, all at the same stamp)
    assert len(first.records) == 2000
    assert first.cursor.modstamp == fake.now and first.cursor.last_id == seeded[1999]
    pages, _ = drain(make_adapter(), "contacts", first.cursor)
    rest = ids(pages)
    assert rest == seeded[2000:], "resume inside the timestamp: nothing twice, nothing skipped"


def test_records_changed_while_paging_are_read_again_next_run(fake, make_adapter):
    seeded = [fake.insert("Contact", LastName=f"L{i}") for i in range(4100)]
    adapter = make_adapter()
    seen: dict[str, str] = {}
    versions: list[tuple[str, str]] = []
    cursor = Cursor()
    for i, page in enumerate(adapter.read("contacts", Cursor())):
        for r in page.records:
            versions.append((r.source_id, r.hash()))
            seen[r.source_id] = r.fields.get("LastName")
        cursor = page.cursor
        if i == 0:  # someone edits records on pages 1 and 3 while we page
            fake.tick(3)
            fake.update("Contact", seeded[5], LastName="edited-early")
            fake.update("Contact", seeded[4050], LastName="edited-late")
    assert len(versions) == len(set(versions)) == 4100
    fake.tick(120)
    pages, _ = drain(make_adapter(), "contacts", cursor)
    for r in (r for p in pages for r in p.records):
        seen[r.source_id] = r.fields.get("LastName")
    assert set(seen) == set(seeded)
    assert seen[seeded[5]] == "edited-early" and seen[seeded[4050]] == "edited-late"


def test_expired_query_locator_requeries_from_last_page(fake, make_adapter):
    seeded = [fake.insert("Contact", LastName=f"L{i}") for i in range(4500)]
    got = []
    for i, page in enumerate(make_adapter().read("contacts", Cursor())):
        got += [r.source_id for r in page.records]
        if i == 0:
            fake.expire_locators()
    assert got == seeded


def test_deleted_rows_and_merges_become_tombstones_and_aliases(fake, make_adapter):
    a, b, c, d = (fake.insert("Contact", LastName=n) for n in "abcd")
    adapter = make_adapter()
    _, cursor = drain(adapter, "contacts")
    fake.tick(120)
    fake.delete("Contact", a)
    fake.merge("Contact", c, b)
    pages, _ = drain(adapter, "contacts", cursor)
    by_id = {r.source_id: r for p in pages for r in p.records}
    assert by_id[a].deleted and by_id[a].merged_into is None
    assert by_id[b].deleted and by_id[b].merged_into == c
    assert not by_id[c].deleted  # the survivor changed too (its SystemModstamp moved)
    assert d not in by_id
    assert sum(1 for p in pages for r in p.records if r.source_id == b) == 1, "deleted/ does not repeat it"


def test_purged_records_are_reconciled_through_deleted_resource(fake, make_adapter):
    a, b = fake.insert("Contact", LastName="a"), fake.insert("Contact", LastName="b")
    adapter = make_adapter()
    _, cursor = drain(adapter, "contacts")
    fake.tick(60)
    fake.delete("Contact", a)
    fake.purge("Contact", a)  # emptied from the Recycle Bin: queryAll no longer returns it
    fake.tick(600)
    pages, cursor2 = drain(adapter, "contacts", cursor)
    tombstones = [r for p in pages for r in p.records if r.deleted]
    assert [t.source_id for t in tombstones] == [a]
    assert fake.calls(r"GET sobjects/Contact/deleted") == 1
    assert cursor2.state["deleted_until"] > cursor.state["deleted_until"]
    assert b not in [t.source_id for t in tombstones]


def test_deleted_gap_older_than_window_asks_for_full_reconciliation(fake, make_adapter):
    fake.insert("Contact", LastName="a")
    adapter = make_adapter()
    _, cursor = drain(adapter, "contacts")
    fake.tick(timedelta(days=20).total_seconds())
    _, last = drain(adapter, "contacts", cursor)
    assert last.state.get("full_reconciliation_needed") is True
    assert fake.calls(r"sobjects/Contact/deleted") == 0
    live = list(make_adapter().list_ids("contacts"))
    assert len(live) == 1


def test_lead_conversion_links_to_contact(fake, make_adapter):
    lead = fake.insert("Lead", LastName="Hopper", Email="grace@example.com", Company="Navy")
    adapter = make_adapter()
    _, cursor = drain(adapter, "leads")
    fake.tick(120)
    contact = fake.convert_lead(lead)
    pages, _ = drain(adapter, "leads", cursor)
    (record,) = [r for p in pages for r in p.records]
    assert record.fields["IsConverted"] is True
    assert record.fields["ConvertedContactId"] == contact
    assert record.associations == {"Contact": [contact]}


def test_interactions_carry_customer_refs_and_derived_types(fake, make_adapter):
    contact = fake.insert("Contact", LastName="Lovelace")
    fake.insert("Task", WhoId=contact, Subject="Call back", TaskSubtype="Call")
    fake.insert("Opportunity", ContactId=contact, Name="Big deal", Amount=1200.0, IsWon=True, IsClosed=True)
    adapter = make_adapter()
    (task,) = [r for p in drain(adapter, "tasks")[0] for r in p.records]
    assert task.associations == {"Contact": [contact]}
    assert (task.fields["cx__channel"], task.fields["cx__type"]) == ("phone", "call")
    (opp,) = [r for p in drain(adapter, "opportunities")[0] for r in p.records]
    assert opp.fields["cx__type"] == "deal_won" and opp.fields["Amount"] == 1200.0
    infos = {s.name: s for s in adapter.streams()}
    assert infos["tasks"].entity == "interaction" and infos["tasks"].customer_object == "Contact"
    assert infos["contacts"].default_mapping["emails"] == ["Email"]


def test_custom_fields_from_describe_are_read(fake, make_adapter):
    fake.add_field("Contact", "Loyalty_Tier__c")
    fake.add_field("Contact", "Internal_Note")  # not custom, not asked for: not read
    fake.insert("Contact", LastName="X", Loyalty_Tier__c="gold", Internal_Note="n")
    (record,) = [r for p in drain(make_adapter(), "contacts")[0] for r in p.records]
    assert record.fields["Loyalty_Tier__c"] == "gold"
    assert "Internal_Note" not in record.fields
    (record,) = [r for p in drain(make_adapter(extra_fields={"Contact": ["Internal_Note"]}), "contacts")[0]
                 for r in p.records]
    assert record.fields["Internal_Note"] == "n"
    described = {f.name: f for f in make_adapter().describe("contacts")}
    assert described["Loyalty_Tier__c"].custom and not described["Email"].custom


def test_unknown_extra_field_is_a_config_error_naming_the_key(fake, make_adapter):
    fake.insert("Contact", LastName="X")
    with pytest.raises(ConfigError) as err:
        drain(make_adapter(extra_fields={"Contact": ["Nope__c"]}), "contacts")
    assert "extra_fields.Contact" in str(err.value) and "Nope__c" in str(err.value)


def test_read_ids_returns_current_state_and_tombstones(fake, make_adapter):
    a, b = fake.insert("Contact", LastName="a"), fake.insert("Contact", LastName="b")
    fake.merge("Contact", a, b)
    pages = list(make_adapter().read_ids("contacts", [a, b, "003FAKE99999999AAA"]))
    by_id = {r.source_id: r for p in pages for r in p.records}
    assert not by_id[a].deleted
    assert by_id[b].deleted and by_id[b].merged_into == a
    assert by_id["003FAKE99999999AAA"].deleted


def test_full_read_ignores_the_cursor_and_lists_ids_for_reconciliation(fake, make_adapter):
    seeded = [fake.insert("Contact", LastName=f"L{i}") for i in range(30)]
    adapter = make_adapter()
    _, cursor = drain(adapter, "contacts")
    fake.tick(60)
    fake.delete("Contact", seeded[0])
    fake.purge("Contact", seeded[0])
    pages, _ = drain(adapter, "contacts", cursor, full=True)
    assert ids(pages) == seeded[1:]
    assert sorted(adapter.list_ids("contacts")) == sorted(seeded[1:])
    assert not adapter.streams()[0].supports_deletes, "so the engine reconciles ids on full runs"


def test_too_many_custom_fields_for_a_query_url_is_a_config_error(fake, make_adapter):
    for i in range(700):
        fake.add_field("Contact", f"Very_Long_Custom_Field_Name_{i:03d}__c")
    with pytest.raises(ConfigError) as err:
        drain(make_adapter(), "contacts")
    assert "include_custom_fields" in str(err.value)
    fake.insert("Contact", LastName="x")
    assert len(ids(drain(make_adapter(include_custom_fields=False), "contacts")[0])) == 1
