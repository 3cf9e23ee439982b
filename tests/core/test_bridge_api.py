"""``Bridge.from_config`` end to end on both stores: sync, deliver write-backs, iterate, forget, status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_bridge_views import T0, TierWriter, callcentre, shop

from cxbridge.bridge import Bridge
from cxbridge.errors import ConfigError, NotFound
from cxbridge.testing.memory import memory_setup


def _config(store: Any, folder: Path) -> Path:
    url = store.engine.url.render_as_string(hide_password=False)
    path = folder / "cxbridge.toml"
    path.write_text(f"""
[store]
url = "{url}"

[identity]
default_region = "DE"
cross_ids = ["erp_no"]
source_priority = ["shop", "cc"]

[sync]
lookback_seconds = 0

[sources.shop]
adapter = "memory-shop"
[sources.cc]
adapter = "memory-cc"

[[writeback]]
trait = "test.tier"
source = "shop"
object_type = "customers"
field = "cx_tier"
""", encoding="utf-8")
    return path


def _crms() -> tuple[Any, Any]:
    a, b = shop(), callcentre()
    a.put("customers", "1", {"fn": "Ann", "ln": "Lee", "email": "ann@example.com", "phone": "030 1234567"},
          modstamp=T0)
    a.put("customers", "2", {"fn": "Bob", "email": "bob@example.com"}, modstamp=T0)
    a.put("customers", "3", {"fn": "Cleo", "email": "cleo@example.com"}, modstamp=T0)
    a.put("orders", "o1", {"cust": "1", "total": "5", "at": "2024-05-01T10:00:00Z"}, modstamp=T0)
    b.put("contacts", "c1", {"name": "Ann Lee", "tel": "+49 30 1234567"}, modstamp=T0)
    b.put("calls", "k1", {"contact": "c1", "at": "2024-05-02T09:00:00Z", "topic": "delivery"}, modstamp=T0)
    return a, b


def test_bridge_from_config_syncs_delivers_and_forgets(store: Any, tmp_path: Path) -> None:
    a, b = _crms()
    pm = memory_setup(store, {"shop": a, "cc": b}, plugins=(TierWriter(),)).pm  # registers the memory adapters
    with Bridge.from_config(_config(store, tmp_path), pm=pm) as br:
        runs = br.sync()
        assert [(r.source, r.stream, r.status, r.records_read) for r in runs] == [
            ("shop", "customers", "succeeded", 3), ("shop", "orders", "succeeded", 1),
            ("cc", "contacts", "succeeded", 1), ("cc", "calls", "succeeded", 1)]
        assert [r.source for r in br.sync(["cc"])] == ["cc", "cc"]
        with pytest.raises(NotFound, match="no source 'nope'; configured: shop, cc"):
            br.sync(["nope"])
        st = br.status()
        assert (st["customers"], st["customers_in_several_sources"], st["outbox"]) == (3, 1, {"pending": 3})

        report = br.deliver_writes()
        assert report is not None
        assert {sid: row["cx_tier"] for sid, row in a.live("customers").items()} == {
            "1": "gold", "2": "silver", "3": "silver"}
        assert br.status()["outbox"] == {"sent": 3}
        assert br.customer("030 1234567").open_writes == 0

        batches = list(br.iter_customers(batch_size=2))
        assert [len(batch) for batch in batches] == [2, 1]
        assert sorted(c.first_name or "" for batch in batches for c in batch) == ["Ann", "Bob", "Cleo"]

        ann = br.find_customer_id("ann@example.com")
        erased = br.forget("030 1234567")  # a national phone number: the identity region applies
        assert erased.customer_id == ann
        assert erased.sources == {"shop": "erased", "cc": "erased"}
        assert {(ref.object_type, ref.source_id) for ref in a.erased + b.erased} == {("customers", "1"),
                                                                                      ("contacts", "c1")}
        with pytest.raises(NotFound):
            br.customer("ann@example.com")
        assert br.status()["customers"] == 2
        with pytest.raises(NotFound):
            br.forget("ann@example.com")


def test_bridge_from_config_uses_cxbridge_config_and_names_a_missing_file(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = _crms()
    pm = memory_setup(store, {"shop": a, "cc": b}, plugins=(TierWriter(),)).pm
    monkeypatch.setenv("CXBRIDGE_CONFIG", str(_config(store, tmp_path)))
    with Bridge.from_config(pm=pm) as br:
        assert br.config.workspace == tmp_path.resolve()
        br.sync(["shop"])
        assert br.find_customer_id("shop/2") == br.find_customer_id("BOB@example.com")
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        Bridge.from_config(tmp_path / "missing.toml", pm=pm)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CXBRIDGE_CONFIG")
    with Bridge.from_config(pm=pm) as br:  # ./cxbridge.toml
        assert br.status()["customers"] == 3


def test_bridge_forget_goes_on_when_an_adapter_cannot_be_built(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CRM whose adapter cannot be built (a missing token, say) is reported failed, its records wait in
    erasure_pending, and `retry_erasures` erases them once the adapter builds again."""
    import cxbridge.sources

    a, b = _crms()
    pm = memory_setup(store, {"shop": a, "cc": b}, plugins=(TierWriter(),)).pm
    config = _config(store, tmp_path)
    with Bridge.from_config(config, pm=pm) as br:
        br.sync()
    build = cxbridge.sources.build_adapter

    def broken(config: Any, name: str, **kwargs: Any) -> Any:
        if name == "cc":
            raise ConfigError("CC_TOKEN is not set", key="sources.cc.connection.token")
        return build(config, name, **kwargs)

    monkeypatch.setattr(cxbridge.sources, "build_adapter", broken)
    with Bridge.from_config(config, pm=pm) as br:
        report = br.forget("ann@example.com")
        assert report.sources["shop"] == "erased" and report.sources["cc"].startswith(
            "failed: cannot build adapter:") and "CC_TOKEN" in report.sources["cc"]
        pending = [(r.source, r.object_type, r.source_id) for r in br.pending_erasures()]
        assert pending == [("cc", "contacts", "c1")]
        still = br.retry_erasures()
        assert still.pending == {"cc": 1} and "CC_TOKEN" in still.errors["cc"] and not b.erased
    monkeypatch.undo()
    with Bridge.from_config(config, pm=pm) as br:
        assert br.retry_erasures().erased == {"cc": 1}
        assert br.pending_erasures() == []
    assert [(ref.object_type, ref.source_id) for ref in b.erased] == [("contacts", "c1")]
