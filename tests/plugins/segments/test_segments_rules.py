"""The rule language: semantics, config-load errors with key and position, and safety."""

from __future__ import annotations

from datetime import date

import pytest
from cxbridge_segments.rules import Env, RuleEvaluationError, RuleSyntaxError, compile_rule
from cxbridge_segments.settings import SegmentsSettings
from pydantic import ValidationError

from cxbridge.models import Customer, Demographics

KEY = "plugins.segments.rules.test"
TODAY = date(2024, 6, 30)


def env(**variables) -> Env:
    base = {
        "customer": Customer(id="c1", emails=["Ann@Example.com"],
                             demographics=Demographics(country="DE", birth_date=date(1990, 7, 1))),
        "purchases_count": 4, "days_since_last_purchase": 120, "tier": "gold", "revenue": 250.0,
        "rfm_segment": "At Risk", "clv": None,
    }
    base.update(variables)
    traits = {"segments.tier": base["tier"], "nps.category": "detractor", "nps.score": 3}
    history = [("purchase", date(2024, 3, 1)), ("call", date(2024, 6, 20)), ("call", date(2023, 1, 1))]
    return Env(base, traits, TODAY, history)


def run(source: str, **variables) -> bool:
    return compile_rule(source, key=KEY).evaluate(env(**variables))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('trait("segments.tier") == "gold" and days_since_last_purchase > 90', True),
        ('tier == "gold" and days_since_last_purchase > 180', False),
        ('traits["nps.category"] in ("detractor", "passive")', True),
        ("traits['nps.score'] <= 6 and purchases_count >= 4", True),
        ('customer.demographics.country == "DE"', True),
        ('lower(customer.emails[0]) == "ann@example.com"', True),
        ("len(customer.emails) == 1 and customer.emails[5] is None", True),
        ("days_since(customer.demographics.birth_date) > 365 * 30", True),
        ('interactions_count("call", 30) == 1 and interactions_count("call") == 2', True),
        ("revenue / purchases_count == 62.5", True),
        ("clv > 100", False),  # None compares false, never raises
        ("not (clv > 100)", True),
        ("clv is None", True),
        ('has_trait("nps.score") and not has_trait("social.influence")', True),
        ('rfm_segment in ["At Risk", "Can\'t Lose Them"]', True),
        ("10 < days_since_last_purchase <= 120", True),
        ("max(purchases_count, 10) == 10 and abs(-3) == 3 and round(2.5) == 2", True),
        ("purchases_count ** 2 == 16", True),
        ('"gold" if revenue > 100 else "silver"', True),
    ],
)
def test_rule_semantics(source: str, expected: bool) -> None:
    assert run(source) is expected


def test_none_arithmetic_propagates() -> None:
    assert run("clv * 2 > 0") is False
    assert run("days_since_last_purchase > 90", days_since_last_purchase=None) is False


@pytest.mark.parametrize(
    ("source", "column", "reason"),
    [
        ("days_since_last_purchase >", 27, "invalid syntax"),
        ('tier == "gold', 9, "unterminated string"),
        ("purchases_count and and tier", 21, "invalid syntax"),
        ("unknown_thing > 3", 1, "unknown name 'unknown_thing'"),
        ('tier == "gold" and frobnicate(1)', 20, "only the rule functions may be called"),
    ],
)
def test_parse_errors_name_the_key_and_position(source: str, column: int, reason: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        compile_rule(source, key=KEY)
    err = info.value
    assert err.key == KEY and err.line == 1 and err.column == column
    assert reason in str(err) and str(err).startswith(KEY)


def test_settings_report_the_rule_key_at_config_load() -> None:
    with pytest.raises(ValidationError) as info:
        SegmentsSettings.model_validate({"rules": {"ok": "tier == 'gold'", "lapsed": "tier ==="}})
    assert "plugins.segments.rules.lapsed" in str(info.value)
    assert "column" in str(info.value)
    with pytest.raises(ValidationError, match="lower snake case"):
        SegmentsSettings.model_validate({"rules": {"Bad-Name": "tier == 'gold'"}})


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "customer.__class__",
        "customer.__class__.__mro__",
        "customer.model_dump",
        "customer.no_such_field == 1",
        "customer.demographics.__dict__",
        "().__class__.__bases__[0].__subclasses__()",
        "(1).real",
        "'abc'.upper()",
        "9**9**9",
        "2 ** purchases_count",
        "10 ** 1000",
        "lambda: 1",
        "[x for x in (1, 2)]",
        "{'a': 1}",
        "open('/etc/passwd')",
        "eval('1')",
        "getattr(customer, 'id')",
        "trait(name='x')",
        "len(*[1])",
        "(x := 1)",
        "f'{tier}'",
        "traits[tier]",
    ],
)
def test_unsafe_rules_are_rejected_at_load(source: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        compile_rule(source, key=KEY)
    assert str(info.value).startswith(KEY)


@pytest.mark.parametrize(
    "source",
    [
        '"a" * 100000 == ""',
        "(10 ** 60) ** 60 > 0",
        "customer.demographics.emails == 1",  # a customer field, but not one of demographics
        'tier > 3',
        'days_since("not a date") > 1',
    ],
)
def test_runtime_limits_raise_evaluation_errors(source: str) -> None:
    rule = compile_rule(source, key=KEY)
    with pytest.raises(RuleEvaluationError):
        rule.evaluate(env())


def test_rule_length_and_complexity_limits() -> None:
    with pytest.raises(RuleSyntaxError, match="longer than"):
        compile_rule("1 + " * 700 + "1", key=KEY)
    with pytest.raises(RuleSyntaxError, match="too complex"):
        compile_rule("+".join(["1"] * 300), key=KEY)
