"""``cxbridge segments ...`` through the real CLI and ``Bridge`` on a SQLite workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
from cxbridge_segments import plugin
from cxbridge_segments.state import clear_states
from sqlalchemy import select
from test_segments_writeback import NOW, SETTINGS, load, shop
from typer.testing import CliRunner

from cxbridge.cli.app import create_app
from cxbridge.plugins import get_plugin_manager
from cxbridge.store import open_store
from cxbridge.store import schema as s
from cxbridge.testing.memory import memory_setup


@pytest.fixture(autouse=True)
def _fresh_states():
    clear_states()
    yield
    clear_states()


def test_refit_report_show_on_a_workspace(tmp_path: Path) -> None:
    (tmp_path / "cxbridge.toml").write_text(
        '[store]\nurl = "sqlite:///ws.db"\n\n[plugins.segments]\nas_of = "2024-06-01"\n'
        'rules = { big = "revenue >= 600" }\n'
        "[plugins.segments.tiers]\n"
        'mode = "threshold"\n'
        + "".join(
            f'[[plugins.segments.tiers.levels]]\nname = "{lv["name"]}"\n'
            + (f'min_value = {lv["min_value"]}\n' if "min_value" in lv else "")
            + f'service_level = {{ response_time_hours = {lv["service_level"]["response_time_hours"]}, '
              f'channel = "{lv["service_level"]["channel"]}" }}\n'
            for lv in SETTINGS["tiers"]["levels"]
        )
    )
    store = open_store("sqlite:///ws.db", base_dir=tmp_path)
    adapter = shop()
    load(adapter)
    memory_setup(store, {"shop": adapter}, config={"sync": {"lookback_seconds": 0}}, now=lambda: NOW).run()
    store.close()

    def pm_factory():
        pm = get_plugin_manager(load_entrypoints=False)
        pm.register(plugin, name="segments")
        return pm

    app = create_app(plugin_manager_factory=pm_factory)
    runner = CliRunner()
    config = str(tmp_path / "cxbridge.toml")
    result = runner.invoke(app, ["--config", config, "segments", "refit"])
    assert result.exit_code == 0, result.output
    assert "re-scored 25 customers" in result.output

    store = open_store("sqlite:///ws.db", base_dir=tmp_path)
    with store.connect() as conn:
        tiers = [r.value for r in conn.execute(select(s.traits.c.value).where(s.traits.c.name == "segments.tier"))]
        events = [r.name for r in conn.execute(select(s.events.c.name))]
    store.close()
    assert sorted(set(tiers)) == ["bronze", "gold", "silver"] and tiers.count("gold") == 8
    assert events.count("segments.entered") == 15

    html = tmp_path / "report.html"
    result = runner.invoke(app, ["--config", config, "segments", "report", "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert "<td>gold</td><td>8</td>" in html.read_text()
    assert "<td>big</td><td>15</td>" in html.read_text()

    result = runner.invoke(app, ["--config", config, "segments", "show", "n24@example.com"])
    assert result.exit_code == 0, result.output
    assert "gold" in result.output and "segments.rule.big" in result.output

    # A big new order for customer 1 (60 EUR so far), then `show --rescore` shows the new tier at once.
    store = open_store("sqlite:///ws.db", base_dir=tmp_path)
    adapter.put("orders", "1-big", {"cust": "1", "total": "5000", "cur": "EUR", "kind": "purchase",
                                    "at": "2024-05-31T10:00:00+00:00"}, modstamp=NOW)
    memory_setup(store, {"shop": adapter}, config={"sync": {"lookback_seconds": 0}}, now=lambda: NOW).run()
    store.close()
    result = runner.invoke(app, ["--config", config, "segments", "show", "n1@example.com", "--rescore"])
    assert result.exit_code == 0, result.output
    tier_line = next(line for line in result.output.splitlines() if "segments.tier" in line)
    assert "gold" in tier_line
