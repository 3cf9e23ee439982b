"""Golden record assembly: survivorship strategies, list unions, sticky opt-outs, provenance."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cxbridge.golden import Contribution, Survivorship, assemble

OLD = datetime(2024, 1, 1, tzinfo=UTC)
NEW = datetime(2024, 6, 1, tzinfo=UTC)

SHOP = Contribution("shop", "customers", "1", OLD, {
    "first_name": "Ann", "last_name": "Lee", "emails": ["ann@example.com"], "phones": ["+4930123456"],
    "demographics.country": "DE", "consent.email_opt_out": False,
})
CALL = Contribution("callcentre", "contacts", "c9", NEW, {
    "first_name": "Anne", "emails": ["a.lee@work.de", "ann@example.com"], "consent.email_opt_out": True,
    "custom.notes": "VIP",
})


def test_source_priority_prefers_listed_source_and_unions_lists() -> None:
    data, prov = assemble([CALL, SHOP], Survivorship("source_priority", ["shop", "callcentre"]))
    assert data["first_name"] == "Ann"
    assert data["emails"] == ["ann@example.com", "a.lee@work.de"]
    assert data["phones"] == ["+4930123456"]
    assert data["demographics"] == {"country": "DE"}
    assert data["custom"] == {"notes": "VIP"}
    assert prov["first_name"]["source"] == "shop"
    assert prov["custom.notes"]["source"] == "callcentre"


def test_opt_outs_are_sticky_whatever_the_priority() -> None:
    data, prov = assemble([SHOP, CALL], Survivorship("source_priority", ["shop", "callcentre"]))
    assert data["consent"]["email_opt_out"] is True
    assert prov["consent.email_opt_out"]["source"] == "callcentre"


def test_most_recent_prefers_newest_record() -> None:
    data, prov = assemble([SHOP, CALL], Survivorship("most_recent"))
    assert data["first_name"] == "Anne"
    assert "last_name" not in data  # name parts come together from one record (no "Anne" + shop's "Lee")
    assert data["emails"][0] == "a.lee@work.de"
    assert prov["first_name"] == {"source": "callcentre", "object_type": "contacts", "source_id": "c9",
                                  "observed_at": NEW.isoformat()}


def test_most_complete_prefers_record_with_most_fields() -> None:
    data, _ = assemble([CALL, SHOP], Survivorship("most_complete"))
    assert data["first_name"] == "Ann"


def test_unknown_strategy_rejected() -> None:
    with pytest.raises(ValueError, match="survivorship"):
        Survivorship("loudest")


def test_single_contribution_and_refs_excluded() -> None:
    c = Contribution("shop", "customers", "2", None, {"first_name": "Bo", "organization_ref": "7"})
    data, prov = assemble([c], Survivorship())
    assert data == {"emails": [], "phones": [], "first_name": "Bo"}
    assert set(prov) == {"first_name"}


def test_name_parts_survive_together_and_conflicting_full_names_are_dropped() -> None:
    shop = Contribution("shop", "customers", "2", OLD, {"first_name": "Bob", "last_name": "Stone"})
    cc = Contribution("cc", "contacts", "c2", NEW, {"full_name": "Robert Stone"})
    agreeing = Contribution("cc", "contacts", "c3", NEW, {"full_name": "bob  STONE"})
    data, _ = assemble([cc, shop], Survivorship("source_priority", ["shop", "cc"]))
    assert (data["first_name"], data["last_name"], data.get("full_name")) == ("Bob", "Stone", None)
    data, prov = assemble([agreeing, shop], Survivorship("source_priority", ["shop", "cc"]))
    assert data["full_name"] == "bob  STONE" and prov["full_name"]["source_id"] == "c3"


@pytest.mark.parametrize("contribution", [SHOP, CALL, Contribution("x", "y", "1", None, {
    "first_name": "", "full_name": "Al Bo", "addresses": [{"city": "Bonn"}, {"city": "Bonn"}], "emails": [],
    "custom.a": 1, "consent.sms_opt_out": False}),
    Contribution("x", "y", "2", datetime(2026, 3, 1, 12, 0), {  # naive modstamp, duplicate list values
        "emails": ["a@x.test", "b@x.test", "a@x.test"], "phones": ["+4930123"], "last_name": "Ng"}),
    Contribution("x", "y", "3", None, {})])
def test_single_record_fast_path_equals_general_assembly(contribution: Contribution) -> None:
    from cxbridge.golden import assemble_compact, compact_provenance, expand_provenance

    rule = Survivorship("source_priority", ["shop"])
    data, prov = assemble([contribution], rule)
    fast_data, fast_prov = assemble_compact([contribution], rule)
    assert fast_data == data
    # stored without a field list: every field of the data comes from the one record
    assert set(fast_prov) == {"sources"} and len(fast_prov["sources"]) == (1 if prov else 0)
    assert expand_provenance(fast_prov, fast_data) == expand_provenance(compact_provenance(prov)) == prov
