"""load_customers builds traits and links without re-validating them: the result equals validated models."""

from __future__ import annotations

from datetime import UTC, datetime

from cxbridge.golden import _trusted, load_customers
from cxbridge.models import Customer, Provenance, SourceLink, Trait
from cxbridge.store import schema as s
from cxbridge.sync.bulk import bulk_upsert

NOW = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)


def test_loaded_traits_links_and_provenance_equal_validated_models(store) -> None:  # type: ignore[no-untyped-def]
    data = {"first_name": "Ann", "emails": ["ann@x.test"], "phones": ["+4930123456"],
            "demographics": {"country": "DE"}}
    prov = {"sources": [["crm", "contacts", "1", NOW.isoformat()]], "fields": {"first_name": 0, "emails": 0}}
    with store.begin() as conn:
        bulk_upsert(conn, s.customers, [{
            "id": "cus_1", "data": data, "provenance": prov, "display_name": "Ann", "primary_email": "ann@x.test",
            "primary_phone": "+4930123456", "organization_id": None, "erased": False, "processing_opt_out": False,
            "version": 1, "created_at": NOW, "updated_at": NOW}], ["id"])
        bulk_upsert(conn, s.traits, [
            {"customer_id": "cus_1", "name": f"seg.t{i}", "value": value, "type": kind, "producer": "seg",
             "computed_at": NOW}
            for i, (value, kind) in enumerate([(1.5, "number"), ("gold", "string"), (True, "boolean"),
                                               ({"a": [1, 2]}, "json"), (None, "string")])
        ], ["customer_id", "name"])
        bulk_upsert(conn, s.source_links, [
            {"source": "crm", "object_type": "contacts", "source_id": sid, "entity": "customer",
             "customer_id": "cus_1", "organization_id": None, "rule": rule, "linked_at": NOW}
            for sid, rule in (("1", "new"), ("2", "email"))
        ], ["source", "object_type", "source_id"])
    with store.connect() as conn:
        (customer,) = load_customers(conn, ["cus_1"])
    assert len(customer.traits) == 5 and len(customer.links) == 2
    for trait in customer.traits.values():
        validated = Trait.model_validate(trait.model_dump())
        assert trait == validated and trait.model_fields_set == validated.model_fields_set
        assert trait.computed_at == NOW and trait.computed_at.tzinfo is not None
    for link in customer.links:
        validated_link = SourceLink.model_validate(link.model_dump())
        assert link == validated_link and link.model_fields_set == validated_link.model_fields_set
    assert customer.provenance["first_name"] == Provenance(source="crm", object_type="contacts", source_id="1",
                                                           observed_at=NOW)
    # the whole customer round-trips through validation unchanged
    assert Customer.model_validate(customer.model_dump()) == customer


def test_trusted_constructor_falls_back_to_model_construct_for_partial_values() -> None:
    make = _trusted(SourceLink)
    partial = make(source="crm", object_type="contacts", source_id="9")
    assert partial == SourceLink(source="crm", object_type="contacts", source_id="9")
    full = make(source="crm", object_type="contacts", source_id="9", linked_at=NOW, rule="new")
    assert full == SourceLink(source="crm", object_type="contacts", source_id="9", linked_at=NOW, rule="new")
    assert full.model_fields_set == {"source", "object_type", "source_id", "linked_at", "rule"}
