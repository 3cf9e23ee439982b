"""Write-back: batch update / upsert, tasks and notes on contacts, 207 per-item results, 400 split, 409."""

from __future__ import annotations

from datetime import UTC, datetime

from cxbridge.adapters import RecordRef, WriteOp


def test_batch_update_100_per_call_and_207_per_item(fake, make_adapter):
    fake.add_property("contacts", "cx_tier")
    ids = [fake.add("contacts", {"email": f"w{i}@example.com"}) for i in range(150)]
    adapter = make_adapter()
    ops = [WriteOp(key=f"k{i}", object_type="contacts", action="update", fields={"cx_tier": "gold"},
                   source_id=cid) for i, cid in enumerate(ids)]
    ops.append(WriteOp(key="ghost", object_type="contacts", action="update", fields={"cx_tier": "x"},
                       source_id="424242"))
    results = []
    for start in range(0, len(ops), adapter.write_batch_size):
        results += adapter.write(ops[start:start + adapter.write_batch_size])
    by_key = {r.key: r for r in results}
    assert len(results) == 151
    assert all(by_key[f"k{i}"].ok and by_key[f"k{i}"].source_id == cid for i, cid in enumerate(ids))
    assert not by_key["ghost"].ok and not by_key["ghost"].retryable and "OBJECT_NOT_FOUND" in by_key["ghost"].error
    assert all(fake.get("contacts", cid)["cx_tier"] == "gold" for cid in ids)
    assert fake.count("POST", "/batch/update$") == 2


def test_invalid_property_fails_only_its_op(fake, make_adapter):
    fake.add_property("contacts", "cx_tier")
    a = fake.add("contacts", {"email": "a@example.com"})
    b = fake.add("contacts", {"email": "b@example.com"})
    adapter = make_adapter()
    results = adapter.write([
        WriteOp(key="good", object_type="contacts", action="update", fields={"cx_tier": "gold"}, source_id=a),
        WriteOp(key="bad", object_type="contacts", action="update", fields={"no_such": "x"}, source_id=b),
    ])
    by_key = {r.key: r for r in results}
    assert by_key["good"].ok and fake.get("contacts", a)["cx_tier"] == "gold"
    assert not by_key["bad"].ok and not by_key["bad"].retryable and "does not exist" in by_key["bad"].error


def test_upsert_by_unique_property_creates_and_updates(fake, make_adapter):
    fake.add_property("contacts", "erp_no", unique=True)
    fake.add_property("contacts", "cx_tier")
    existing = fake.add("contacts", {"email": "e@example.com", "erp_no": "E-1"})
    adapter = make_adapter()
    results = adapter.write([
        WriteOp(key="u1", object_type="contacts", action="upsert", fields={"cx_tier": "gold"},
                id_property="erp_no", id_value="E-1"),
        WriteOp(key="u2", object_type="contacts", action="upsert", fields={"cx_tier": "silver"},
                id_property="erp_no", id_value="E-2"),
    ])
    by_key = {r.key: r for r in results}
    assert by_key["u1"].ok and by_key["u1"].source_id == existing
    assert by_key["u2"].ok
    assert fake.get("contacts", by_key["u2"].source_id) == {"erp_no": "E-2", "cx_tier": "silver"}


def test_409_conflict_resolves_to_existing_id(fake, make_adapter):
    fake.add_property("contacts", "erp_no", unique=True)
    owner = fake.add("contacts", {"email": "taken@example.com"})
    adapter = make_adapter()
    [result] = adapter.write([WriteOp(key="c", object_type="contacts", action="upsert",
                                      fields={"email": "taken@example.com", "firstname": "T"},
                                      id_property="erp_no", id_value="E-9")])
    assert result.ok and result.source_id == owner
    assert fake.get("contacts", owner)["firstname"] == "T"
    assert 409 in fake.responses


def test_create_task_and_note_associated_to_contact(fake, make_adapter):
    c = fake.add("contacts", {"email": "n@example.com"})
    adapter = make_adapter()
    due = datetime(2030, 1, 2, tzinfo=UTC)
    results = adapter.write([
        WriteOp(key="t1", object_type="task", action="create",
                fields={"subject": "Call back", "body": "Detractor", "due_at": due, "priority": "high"},
                associations={"contacts": [c]}),
        WriteOp(key="n1", object_type="note", action="create", fields={"subject": "NPS", "body": "score 3"},
                associations={"contacts": [c]}),
        WriteOp(key="t3", object_type="task", action="create",  # as the outbox sends it: ISO due date
                fields={"subject": "Follow up", "body": "", "due_at": due.isoformat(), "priority": "normal"},
                associations={"contacts": [c]}),
        WriteOp(key="t2", object_type="task", action="create", fields={"subject": "x"},
                associations={"contacts": ["999999"]}),
    ])
    by_key = {r.key: r for r in results}
    task = fake.get("tasks", by_key["t1"].source_id)
    assert task["hs_task_subject"] == "Call back" and task["hs_task_priority"] == "HIGH"
    assert task["hs_timestamp"] == str(int(due.timestamp() * 1000))
    assert fake.assoc[("tasks", int(by_key["t1"].source_id))]["contacts"] == {int(c)}
    t3 = fake.get("tasks", by_key["t3"].source_id)
    assert t3["hs_timestamp"] == task["hs_timestamp"] and t3["hs_task_priority"] == "MEDIUM"
    note = fake.get("notes", by_key["n1"].source_id)
    assert note["hs_note_body"] == "NPS\n\nscore 3"
    assert not by_key["t2"].ok  # the unknown contact fails only its own op


def test_singular_object_types_map_to_hubspot_objects(fake, make_adapter):
    fake.add_property("companies", "cx_score")
    co = fake.add("companies", {"name": "Acme"})
    [res] = make_adapter().write([WriteOp(key="c", object_type="company", action="update",
                                          fields={"cx_score": "7"}, source_id=co)])
    assert res.ok and fake.get("companies", co)["cx_score"] == "7"


def test_erase_uses_gdpr_delete(fake, make_adapter):
    c = fake.add("contacts", {"email": "forget@example.com"})
    adapter = make_adapter()
    [res] = adapter.erase([RecordRef("contacts", c)])
    assert res.ok and res.key == f"contacts:{c}"
    assert fake.get("contacts", c) is None and fake.gdpr_deleted == [c]
    [again] = adapter.erase([RecordRef("contacts", c)])
    assert again.ok  # already gone


def test_doctor_checks_token_scopes_and_fields(fake, make_adapter):
    fake.add_property("contacts", "cx_tier")
    fake.add_property("contacts", "cx_calc", read_only=True)
    fake.scopes = ["crm.objects.contacts.read"]
    adapter = make_adapter(streams=["contacts", "companies"])
    checks = {c.name: c for c in adapter.check({"contacts": ["cx_tier", "cx_calc", "cx_missing"]})}
    assert checks["token"].ok
    assert not checks["scopes"].ok and "crm.objects.companies.read" in checks["scopes"].detail
    assert "crm.objects.contacts.write" in checks["scopes"].detail
    assert checks["field contacts.cx_tier"].ok
    assert not checks["field contacts.cx_calc"].ok and not checks["field contacts.cx_missing"].ok


def test_doctor_reports_bad_token(fake, make_adapter):
    adapter = make_adapter(auth={"type": "private_app", "token": "pat-wrong"})
    [check] = adapter.check({})
    assert not check.ok and "INVALID_AUTHENTICATION" in check.detail


def test_describe_flags_custom_properties(fake, make_adapter):
    fake.add_property("contacts", "loyalty_tier")
    fake.add("contacts", {"email": "l@example.com", "loyalty_tier": "gold"})
    adapter = make_adapter()
    fields = {f.name: f for f in adapter.describe("contacts")}
    assert fields["loyalty_tier"].custom and not fields["email"].custom and fields["email"].unique
    assert "loyalty_tier" in adapter.properties_for("contacts")  # read without configuration
    from hubspot_helpers import drain

    records, _, _ = drain(adapter, "contacts")
    assert records[0].fields["loyalty_tier"] == "gold"


def test_new_custom_properties_are_discovered_within_the_hour(fake, make_adapter):
    adapter = make_adapter()
    assert "nps_score" not in adapter.properties_for("contacts")
    fake.add_property("contacts", "nps_score")
    assert "nps_score" not in adapter.properties_for("contacts")  # cached
    fake.clock.sleep(3601)
    assert "nps_score" in adapter.properties_for("contacts")
    assert fake.count("GET", "/crm/v3/properties/contacts") == 2
