"""Compiled field maps: targets, fallbacks, constants, validation errors naming the field."""

from __future__ import annotations

import pytest

from cxbridge.errors import ConfigError, RecordError
from cxbridge.sync.mapping import compile_mapping, merge_specs, nest_patch


def test_customer_mapping_builds_flat_patch_with_normalized_values() -> None:
    m = compile_mapping(
        {
            "first_name": "fname",
            "last_name": "props.last",
            "emails": ["email", "email2", "emails_list"],
            "phones": ["phone", "mobile"],
            "external_ids.erp_no": "erp",
            "custom.loyalty": "loyalty",
            "demographics.birth_date": "born",
            "consent.email_opt_out": "unsub",
            "addresses.0.city": "city",
            "addresses.0.kind": "=billing",
            "addresses.1.city": "ship_city",
        },
        "customer",
        default_region="DE",
    )
    patch = m({
        "fname": "  Ann ", "props": {"last": "Lee"}, "email": "Ann@Example.COM", "email2": "",
        "emails_list": ["ann@example.com", "a.lee@work.de"], "phone": "030 123456", "mobile": None,
        "erp": 4711.0, "loyalty": {"tier": 2}, "born": "03.02.1990", "unsub": "yes", "city": "Bonn",
        "ship_city": None, "unused": "kept in mirror",
    })
    assert patch == {
        "first_name": "Ann",
        "last_name": "Lee",
        "emails": ["ann@example.com", "a.lee@work.de"],
        "phones": ["+4930123456"],
        "external_ids.erp_no": "4711",
        "custom.loyalty": {"tier": 2},
        "demographics.birth_date": "1990-02-03",
        "consent.email_opt_out": True,
        "addresses": [{"city": "Bonn", "kind": "billing"}],
    }
    assert m.unmapped({"fname": 1, "unused": 2, "__error__": 3}) == ["unused"]


def test_scalar_fallback_takes_first_non_empty() -> None:
    m = compile_mapping({"first_name": ["nick", "given"]}, "customer")
    assert m({"nick": " ", "given": "Bo"}) == {"first_name": "Bo"}
    assert m({}) == {}


@pytest.mark.parametrize(
    ("spec", "fields", "field"),
    [
        ({"emails": "email"}, {"email": "not-an-email"}, "email"),
        ({"phones": "tel"}, {"tel": "call me maybe"}, "tel"),
        ({"demographics.birth_date": "born"}, {"born": "31.02.1990"}, "born"),
        ({"consent.email_opt_out": "optout"}, {"optout": "maybe"}, "optout"),
    ],
)
def test_bad_values_raise_record_error_naming_the_field(spec: dict, fields: dict, field: str) -> None:
    m = compile_mapping(spec, "customer", default_region="DE")
    with pytest.raises(RecordError) as info:
        m(fields)
    assert info.value.field == field
    assert repr(field) in str(info.value)


def test_interaction_mapping_validates_amount_currency_and_dates() -> None:
    m = compile_mapping(
        {"customer_ref": "cust", "amount": "total", "currency": "cur", "occurred_at": "at", "type": "kind",
         "channel": "=web", "context.device": "device"},
        "interaction",
    )
    patch = m({"cust": 17, "total": "1.234,50".replace(".", ""), "cur": "eur", "at": "2024-05-01T10:00:00Z",
               "kind": "Webinar", "device": "mobile"})
    assert patch == {
        "customer_ref": "17", "amount": "1234.50", "currency": "EUR", "occurred_at": "2024-05-01T10:00:00+00:00",
        "type": "other", "custom.type_raw": "Webinar", "channel": "web", "context.device": "mobile",
    }
    assert m({"at": 1714557600000})["occurred_at"] == "2024-05-01T10:00:00+00:00"
    with pytest.raises(RecordError, match="'total' -> amount"):
        m({"total": "twelve"})
    with pytest.raises(RecordError, match="currency"):
        m({"cur": "EURO"})
    with pytest.raises(RecordError, match="'at' -> occurred_at"):
        m({"at": "yesterday"})


def test_unknown_targets_and_bad_expressions_are_config_errors_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        compile_mapping({"fist_name": "fname"}, "customer", key_prefix="sources.shop.streams.customers.mapping")
    assert info.value.key == "sources.shop.streams.customers.mapping.fist_name"
    with pytest.raises(ConfigError, match="amount"):
        compile_mapping({"amount": "total"}, "customer")
    with pytest.raises(ConfigError):
        compile_mapping({"first_name": 3}, "customer")  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="constant"):
        compile_mapping({"type": "=nonsense"}, "interaction")


def test_merge_specs_config_overrides_and_removes_defaults() -> None:
    merged = merge_specs({"first_name": "fn", "emails": "email"},
                         {"emails": ["email", "email2"], "first_name": ""})
    assert merged == {"emails": ["email", "email2"]}


def test_nest_patch() -> None:
    assert nest_patch({"a": 1, "custom.x": 2, "custom.y": 3}) == {"a": 1, "custom": {"x": 2, "y": 3}}


def test_targets_of_source_fields() -> None:
    m = compile_mapping({"custom.tier": "cx_tier", "first_name": "fn", "addresses.0.city": "city"}, "customer")
    assert m.targets_of({"cx_tier"}) == {"custom.tier"}
    assert m.targets_of({"city"}) == {"addresses"}


def test_single_field_fast_steps_equal_the_general_steps() -> None:
    """A one-field source expression takes a fast step; listing the field twice takes the general one: both
    give the same patch (or the same error) for values of every kind."""
    import random
    from datetime import date

    from cxbridge.errors import RecordError

    targets = {"first_name": "v", "external_ids.erp_no": "v", "demographics.birth_date": "v",
               "consent.email_opt_out": "v", "custom.score": "v", "emails": "v", "phones": "v",
               "organization_ref": "v"}
    rnd = random.Random(5)
    values = [None, "", "  ", " Ann ", "ann@x.test", " ANN@X.TEST ", "030 1234567", "+49 30 1234567", 42, 4.0, 4.5,
              True, False, "yes", "no", "1990-02-03", date(1990, 2, 3), ["a@x.test"], [" b@x.test "], [None],
              ["  "], ["a@x.test", "A@x.test"], ("030 111",), [], {"k": 1}, "a@x.test;b@x.test", "not a mail",
              [42], ["+49 30 1"], "x" * 3]
    for target in targets:
        fast = compile_mapping({target: "v"}, "customer", default_region="DE")
        general = compile_mapping({target: ["v", "v"]}, "customer", default_region="DE")
        for value in values + [rnd.choice(values) for _ in range(20)]:
            outcomes = []
            for mapping in (fast, general):
                try:
                    outcomes.append(("ok", mapping({"v": value})))
                except RecordError as exc:
                    outcomes.append(("error", str(exc)))
            assert outcomes[0] == outcomes[1], (target, value, outcomes)
