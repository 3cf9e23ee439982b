"""RFM features, scores and named segments, including the money edge cases."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from cxbridge_segments.features import compute_features, day_number, table_from_interactions
from cxbridge_segments.money import FxTable
from cxbridge_segments.rfm import DEFAULT_SEGMENT_MAP, QuintileEdges, SegmentMap, fit_edges, score_rfm
from cxbridge_segments.settings import SegmentsSettings
from pydantic import ValidationError
from segments_fakes import AS_OF, buy

TODAY = day_number(AS_OF)
FX = FxTable("EUR", {"USD": 0.5, "GBP": 2.0})


def features_for(interactions_by_customer: dict[str, list], fx: FxTable = FX):
    ids = list(interactions_by_customer)
    table = table_from_interactions(ids, interactions_by_customer, fx)
    return compute_features(table, len(ids), TODAY), table


def test_no_purchases_one_purchase_and_refunds() -> None:
    feats, _ = features_for({
        "none": [buy("none", 3, kind="call")],
        "one": [buy("one", 10, 40.0)],
        "refund_type": [buy("refund_type", 20, 100.0), buy("refund_type", 5, 30.0, kind="refund")],
        "negative": [buy("negative", 20, 100.0), buy("negative", 2, -25.0)],
    })
    assert feats.purchases.tolist() == [0, 1, 1, 1]  # refunds are not purchases
    assert feats.net_value.tolist() == [0.0, 40.0, 70.0, 75.0]
    assert feats.gross_value.tolist() == [0.0, 40.0, 100.0, 100.0]
    # Refunds do not move recency: the last purchase stays 20 days ago.
    assert (TODAY - feats.last_day).tolist()[1:] == [10, 20, 20]
    assert feats.first_day[0] == -1 and feats.last_day[0] == -1
    assert feats.purchase_days.tolist() == [0, 1, 1, 1]


def test_mixed_currencies_are_converted() -> None:
    feats, table = features_for({"c": [buy("c", 3, 10, "EUR"), buy("c", 2, 10, "USD"), buy("c", 1, 10, "gbp")]})
    assert feats.net_value[0] == pytest.approx(10 + 5 + 20)
    assert not feats.unknown_currency[0]
    assert table.unknown_codes == {}


def test_unknown_currency_is_left_out_and_flagged(caplog) -> None:
    fx = FxTable("EUR", {"USD": 0.5})
    with caplog.at_level(logging.WARNING):
        data = {"c": [buy("c", 3, 10, "EUR"), buy("c", 2, 999, "XYZ")], "d": [buy("d", 1, 5)]}
        feats, table = features_for(data, fx)
    assert feats.net_value.tolist() == [10.0, 5.0]  # XYZ amount not guessed
    assert feats.purchases.tolist() == [2, 1]  # still a purchase for frequency and recency
    assert feats.unknown_currency.tolist() == [True, False]
    assert table.unknown_codes == {0: {"XYZ"}}
    assert any("XYZ" in r.getMessage() for r in caplog.records)


def test_missing_currency_uses_default_and_future_purchases_are_ignored() -> None:
    feats, _ = features_for({"c": [buy("c", 3, 10, None), buy("c", -5, 1000)]})
    assert feats.net_value[0] == 10.0
    assert feats.purchases[0] == 1


def test_repeat_value_for_gamma_gamma_excludes_first_day_and_allocates_refunds() -> None:
    feats, _ = features_for({"c": [buy("c", 30, 100), buy("c", 30, 20), buy("c", 10, 60), buy("c", 5, -18)]})
    # Purchase days: day-30 (120) and day-10 (60): x = 1 repeat day; gross 180, net 162 -> share 0.9.
    assert feats.purchase_days[0] == 2
    assert feats.repeat_value[0] == pytest.approx(60 * 0.9)


def _scored(values_by_customer: dict[str, list]):
    feats, _ = features_for(values_by_customer)
    edges = fit_edges(feats, TODAY)
    return feats, edges, score_rfm(feats, TODAY, edges, SegmentMap(DEFAULT_SEGMENT_MAP))


def test_quintile_scores_direction_and_ties() -> None:
    # Ten customers: customer k bought k+1 times, last purchase k*10 days ago, 10 EUR each.
    data = {f"c{k}": [buy(f"c{k}", k * 10 + j, 10.0) for j in range(k + 1)] for k in range(10)}
    _, edges, _ = _scored(data)  # boundaries from these ten
    data["twin"] = [buy("twin", 50 + j, 10.0) for j in range(6)]  # identical to c5
    data["none"] = []
    feats, _ = features_for(data)
    result = score_rfm(feats, TODAY, edges, SegmentMap(DEFAULT_SEGMENT_MAP))
    r, f, m = result.r.tolist(), result.f.tolist(), result.m.tolist()
    assert r[:10] == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]  # most recent = 5
    assert f[:10] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert m[:10] == f[:10]
    assert (r[10], f[10], m[10]) == (r[5], f[5], m[5])  # equal values, equal scores
    assert (r[11], f[11], m[11]) == (0, 0, 0) and result.segment[11] == -1
    # Scores are deterministic: the same input scores the same.
    again = score_rfm(feats, TODAY, edges, SegmentMap(DEFAULT_SEGMENT_MAP))
    assert again.segment.tolist() == result.segment.tolist()


def test_heavily_tied_metric_keeps_equal_customers_together() -> None:
    data = {f"c{k}": [buy(f"c{k}", k + 1, 10.0)] for k in range(8)}  # everyone: one purchase of 10
    data["big"] = [buy("big", 1, 10.0), buy("big", 2, 10.0)]
    _, _, result = _scored(data)
    assert len(set(result.f[:8].tolist())) == 1
    assert result.f[8] > result.f[0]


def test_named_segments_from_the_grid() -> None:
    names = list(DEFAULT_SEGMENT_MAP)
    smap = SegmentMap(DEFAULT_SEGMENT_MAP)
    r = np.array([5, 5, 1, 1, 3, 4, 5, 2, 1, 3, 2], dtype=np.int8)
    fm = np.array([5, 1, 1, 5, 3, 1, 2, 4, 2, 1, 2], dtype=np.int8)
    got = [names[i] for i in smap.lookup(r, fm)]
    assert got == ["Champions", "New", "Lost", "Can't Lose Them", "Need Attention", "Promising",
                   "Potential Loyalist", "At Risk", "Hibernating", "About to Sleep", "Hibernating"]
    assert len(names) == 11


def test_score_against_fixed_edges_for_incremental_scoring() -> None:
    edges = QuintileEdges(recency=(10, 30, 60, 120), frequency=(1, 2, 4, 8), monetary=(50, 100, 200, 500))
    feats, _ = features_for({"c": [buy("c", 200, 600), buy("c", 35, 1), buy("c", 40, 1)]})
    result = score_rfm(feats, TODAY, edges, SegmentMap(DEFAULT_SEGMENT_MAP))
    assert (result.r[0], result.f[0], result.m[0]) == (3, 3, 5)  # 35 days; 3 purchases; 602 EUR
    assert result.fm[0] == 4  # round half up of (3 + 5) / 2


def test_average_monetary_mode() -> None:
    feats, _ = features_for({"a": [buy("a", 1, 100), buy("a", 2, 300)]})
    edges = fit_edges(feats, TODAY, "average")
    result = score_rfm(feats, TODAY, edges, SegmentMap(DEFAULT_SEGMENT_MAP), monetary="average")
    assert result.monetary[0] == 200.0


@pytest.mark.parametrize(
    ("segment_map", "message"),
    [
        ({**DEFAULT_SEGMENT_MAP, "Lost": []}, "cells without a segment: 11"),
        ({**DEFAULT_SEGMENT_MAP, "Extra": ["55"]}, "claimed by both 'Champions' and 'Extra'"),
        ({**DEFAULT_SEGMENT_MAP, "Lost": ["1x"]}, "cell pattern '1x'"),
    ],
)
def test_segment_map_is_validated_at_config_load(segment_map, message) -> None:
    with pytest.raises(ValidationError) as info:
        SegmentsSettings.model_validate({"rfm": {"segment_map": segment_map}})
    assert message in str(info.value)
    assert "segment_map" in str(info.value)


def test_settings_reject_typos_and_bad_rates() -> None:
    with pytest.raises(ValidationError, match="reporting_curency"):
        SegmentsSettings.model_validate({"reporting_curency": "EUR"})
    with pytest.raises(ValidationError, match=r"fx_rates\.USD"):
        SegmentsSettings.model_validate({"fx_rates": {"USD": 0}})


def test_batch_traits_match_per_customer_traits() -> None:
    from cxbridge_segments.engine import fit_model
    from cxbridge_segments.traits import batch_traits, customer_traits

    data = {f"c{k}": [buy(f"c{k}", 7 * k + j, 5.0 + k) for j in range(k % 4)] for k in range(40)}
    feats, _ = features_for(data)
    settings = SegmentsSettings(as_of=AS_OF)
    _, scores = fit_model(feats, settings, TODAY)
    names = list(settings.rfm.segment_map)
    rows = batch_traits(scores, settings, names, {3: "XYZ"})
    for i, row in enumerate(rows):
        assert row == customer_traits(i, scores, settings, names, "XYZ" if i == 3 else None)
    assert rows[0]["segments.rfm_segment"] is None and rows[1]["segments.rfm_segment"] is not None


def test_purchases_before_1970_and_same_day_orders() -> None:
    from datetime import date

    feats, _ = features_for({"old": [buy("old", date(1965, 5, 1), 10), buy("old", date(1965, 5, 1), 5),
                                     buy("old", date(2001, 1, 1), 7)]})
    assert feats.purchases[0] == 3 and feats.purchase_days[0] == 2  # two orders on one day = one transaction
    assert feats.first_day[0] == day_number(date(1965, 5, 1)) < 0
    assert feats.repeat_value[0] == pytest.approx(7.0)
