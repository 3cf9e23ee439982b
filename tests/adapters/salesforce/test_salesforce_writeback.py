"""Write-back through sObject Collections: update by Id, upsert by external id, tasks, per-record errors, erase."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cxbridge.adapters import RecordRef, WriteOp
from cxbridge.errors import QuotaExhausted


@pytest.fixture
def contacts(fake):
    fake.add_field("Contact", "CX_Tier__c")
    fake.add_field("Contact", "ERP_No__c", external_id=True)
    return [fake.insert("Contact", LastName=f"L{i}", ERP_No__c=f"E{i}") for i in range(450)]


def test_updates_go_200_per_collection_call(fake, make_adapter, contacts):
    adapter = make_adapter()
    assert adapter.write_batch_size == 200
    ops = [WriteOp(key=f"k{i}", object_type="Contact", action="update", source_id=cid,
                   fields={"CX_Tier__c": f"tier-{i % 3}"}) for i, cid in enumerate(contacts)]
    results = adapter.write(ops)
    assert all(r.ok for r in results) and {r.key for r in results} == {op.key for op in ops}
    assert fake.calls("PATCH composite/sobjects$") == 3  # ceil(450 / 200)
    assert fake.data["Contact"][contacts[4]]["CX_Tier__c"] == "tier-1"


def test_per_record_errors_fail_alone_with_reason_and_retryability(fake, make_adapter, contacts):
    fake.validations.append(
        lambda obj, row: ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Tier must not be 'vip'", ["CX_Tier__c"])
        if row.get("CX_Tier__c") == "vip" else None
    )
    fake.locked.add(contacts[2])
    fake.delete("Contact", contacts[3])
    ops = [
        WriteOp(key="good", object_type="Contact", action="update", source_id=contacts[0],
                fields={"CX_Tier__c": "gold"}),
        WriteOp(key="invalid", object_type="Contact", action="update", source_id=contacts[1],
                fields={"CX_Tier__c": "vip"}),
        WriteOp(key="locked", object_type="Contact", action="update", source_id=contacts[2],
                fields={"CX_Tier__c": "gold"}),
        WriteOp(key="deleted", object_type="Contact", action="update", source_id=contacts[3],
                fields={"CX_Tier__c": "gold"}),
        WriteOp(key="no-field", object_type="Contact", action="update", source_id=contacts[4],
                fields={"Nope__c": 1}),
    ]
    by_key = {r.key: r for r in make_adapter().write(ops)}
    assert by_key["good"].ok
    assert by_key["invalid"].error == "FIELD_CUSTOM_VALIDATION_EXCEPTION: Tier must not be 'vip' (CX_Tier__c)"
    assert not by_key["invalid"].retryable
    assert by_key["locked"].error.startswith("UNABLE_TO_LOCK_ROW") and by_key["locked"].retryable
    assert by_key["deleted"].error.startswith("ENTITY_IS_DELETED") and not by_key["deleted"].retryable
    assert by_key["no-field"].error.startswith("INVALID_FIELD") and not by_key["no-field"].retryable
    assert fake.data["Contact"][contacts[0]]["CX_Tier__c"] == "gold"
    assert fake.data["Contact"][contacts[1]]["CX_Tier__c"] is None
    assert fake.calls("PATCH composite/sobjects$") == 1


def test_upsert_by_external_id_creates_and_updates(fake, make_adapter, contacts):
    ops = [
        WriteOp(key="u1", object_type="Contact", action="upsert", id_property="ERP_No__c", id_value="E7",
                fields={"CX_Tier__c": "silver"}),
        WriteOp(key="u2", object_type="Contact", action="upsert", id_property="ERP_No__c", id_value="NEW-1",
                fields={"CX_Tier__c": "bronze", "LastName": "Newcomer"}),
    ]
    results = {r.key: r for r in make_adapter().write(ops)}
    assert results["u1"].ok and results["u1"].source_id == contacts[7]
    assert fake.data["Contact"][contacts[7]]["CX_Tier__c"] == "silver"
    created = fake.data["Contact"][results["u2"].source_id]
    assert (created["ERP_No__c"], created["LastName"]) == ("NEW-1", "Newcomer")
    assert fake.calls("PATCH composite/sobjects/Contact/ERP_No__c") == 1


def test_upsert_on_a_field_that_is_not_an_external_id_fails_every_op(fake, make_adapter, contacts):
    op = WriteOp(key="x", object_type="Contact", action="upsert", id_property="LastName", id_value="L1",
                 fields={"CX_Tier__c": "gold"})
    (result,) = make_adapter().write([op])
    assert not result.ok and "INVALID_FIELD" in (result.error or "")


def test_tasks_for_closed_loop_actions(fake, make_adapter, contacts):
    op = WriteOp(key="nps-detractor-1", object_type="task", action="create",
                 fields={"subject": "Call back detractor", "body": "Scored 3", "priority": "high",
                         "due_at": datetime(2026, 1, 9, 12, 0, tzinfo=UTC)},
                 associations={"Contact": [contacts[0]]})
    (result,) = make_adapter().write([op])
    assert result.ok
    task = fake.data["Task"][result.source_id]
    assert (task["Subject"], task["Description"], task["Priority"]) == ("Call back detractor", "Scored 3", "High")
    assert task["WhoId"] == contacts[0] and task["ActivityDate"] == "2026-01-09"
    assert task["Status"] == "Not Started"


def test_tasks_are_idempotent_with_a_key_field(fake, make_adapter, contacts):
    fake.add_field("Task", "cxbridge_key__c", external_id=True)
    op = WriteOp(key="nps-1", object_type="task", action="create", fields={"subject": "Follow up"},
                 associations={"Contact": [contacts[1]]})
    adapter = make_adapter(task_key_field="cxbridge_key__c")
    first, second = adapter.write([op])[0], adapter.write([op])[0]  # a retry after a lost answer
    assert first.ok and second.ok and first.source_id == second.source_id
    assert len(fake.data["Task"]) == 1


def test_quota_during_write_stops_the_batch(fake, make_adapter, contacts):
    adapter = make_adapter()
    adapter.client.sf  # noqa: B018
    fake.api_used = fake.daily_limit
    op = WriteOp(key="k", object_type="Contact", action="update", source_id=contacts[0],
                 fields={"CX_Tier__c": "x"})
    with pytest.raises(QuotaExhausted):
        adapter.write([op])


def test_5xx_on_a_whole_call_marks_ops_retryable(fake, make_adapter, contacts):
    adapter = make_adapter(max_attempts=2)
    adapter.client.sf  # noqa: B018
    fake.fail_next(503, 503)
    op = WriteOp(key="k", object_type="Contact", action="update", source_id=contacts[0],
                 fields={"CX_Tier__c": "x"})
    (result,) = adapter.write([op])
    assert not result.ok and result.retryable


def test_erase_deletes_through_collections(fake, make_adapter, contacts):
    refs = [RecordRef("Contact", cid) for cid in contacts[:250]]
    fake.delete("Contact", contacts[0])  # already gone counts as erased
    results = make_adapter().erase([*refs, RecordRef("Contact", "003FAKE99999999AAA")])
    by_key = {r.key: r for r in results}
    assert all(by_key[f"Contact:{cid}"].ok for cid in contacts[:250])
    assert all(fake.data["Contact"][cid]["IsDeleted"] for cid in contacts[:250])
    assert not fake.data["Contact"][contacts[250]]["IsDeleted"]
    assert by_key["Contact:003FAKE99999999AAA"].ok, "an unknown id is already erased"
    assert fake.calls("DELETE composite/sobjects") == 2


def test_outbox_style_actions_prefer_the_contact_and_notes_attach_to_it(fake, make_adapter, contacts):
    lead = fake.insert("Lead", LastName="Lead")
    account = fake.insert("Account", Name="Acme")
    task = WriteOp(key="a1", object_type="task", action="create",
                   fields={"subject": "Follow up", "body": "", "due_at": "2026-01-09T12:00:00+00:00",
                           "priority": "normal"},
                   associations={"Lead": [lead], "Contact": [contacts[5]], "Account": [account]})
    note = WriteOp(key="a2", object_type="note", action="create",
                   fields={"subject": "NPS 3", "body": "Detractor: slow delivery", "due_at": None,
                           "priority": "normal"},
                   associations={"Contact": [contacts[5]]})
    results = {r.key: r for r in make_adapter().write([task, note])}
    assert results["a1"].ok and results["a2"].ok
    created_task = fake.data["Task"][results["a1"].source_id]
    assert (created_task["WhoId"], created_task["WhatId"]) == (contacts[5], account)
    assert created_task["ActivityDate"] == "2026-01-09" and created_task["Priority"] == "Normal"
    created_note = fake.data["Note"][results["a2"].source_id]
    assert (created_note["ParentId"], created_note["Title"], created_note["Body"]) == (
        contacts[5], "NPS 3", "Detractor: slow delivery")
