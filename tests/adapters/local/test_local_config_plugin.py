"""Config models of the local adapters, registration through the entry point, and loading from cxbridge.toml."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
from cxbridge_local import plugin
from cxbridge_local.config import LocalFilesConfig, LocalSqlConfig
from pydantic import ValidationError


def _sql(**over: object) -> dict[str, object]:
    base: dict[str, object] = {"url": "sqlite:///shop.db", "objects": {"customers": {"table": "customers"}}}
    base.update(over)
    return base


def test_typos_fail_naming_the_key() -> None:
    with pytest.raises(ValidationError) as exc:
        LocalSqlConfig.model_validate(_sql(objects={"customers": {"table": "c", "chnage_column": "x"}}))
    assert "chnage_column" in str(exc.value)
    with pytest.raises(ValidationError, match="not both"):
        LocalSqlConfig.model_validate(
            _sql(objects={"c": {"table": "c", "soft_delete_column": "d", "reconcile_deletes": True}})
        )
    with pytest.raises(ValidationError, match="exactly one"):
        LocalSqlConfig.model_validate(
            _sql(objects={"c": {"table": "c", "related": {"emails": {"table": "cm", "fk": "p"}}}})
        )
    with pytest.raises(ValidationError, match="objects"):
        LocalSqlConfig.model_validate(_sql(objects={}))
    with pytest.raises(ValidationError, match="pattern"):
        LocalFilesConfig.model_validate({"folder": "drop", "objects": {"calls": {"id_column": "id"}}})


def test_url_is_secret() -> None:
    config = LocalSqlConfig.model_validate(_sql(url="postgresql://crm:hunter22@db/crm"))
    assert "hunter22" not in repr(config) and "hunter22" not in config.model_dump_json()


def test_plugin_registers_both_adapters_via_entry_point() -> None:
    names = {info.name: info for info in plugin.register_adapters()}
    assert set(names) == {"local-sql", "local-files"}
    assert names["local-sql"].config_model is LocalSqlConfig
    assert names["local-files"].config_model is LocalFilesConfig
    eps = {ep.name: ep.value for ep in entry_points(group="cxbridge")}
    assert eps.get("local") == "cxbridge_local.plugin", "pip install -e adapters/local registers the entry point"


def test_readme_demo_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's demo configuration validates through the real config loader, secrets from the env."""
    import re

    from cxbridge.config import load_config

    readme = (Path(__file__).parents[3] / "adapters" / "local" / "README.md").read_text(encoding="utf-8")
    toml = re.search(r"<!-- demo-config -->\s*```toml\n(.*?)```", readme, re.S)
    assert toml, "README has the demo config block"
    (tmp_path / "cxbridge.toml").write_text(toml.group(1), encoding="utf-8")
    (tmp_path / "exports").mkdir()
    config = load_config(tmp_path / "cxbridge.toml", env={"SHOP_DB_URL": "sqlite:///shop.db"})
    shop = config.sources["shop"].connection
    calls = config.sources["callcentre"].connection
    assert isinstance(shop, LocalSqlConfig) and isinstance(calls, LocalFilesConfig)
    assert set(shop.objects) == {"customers", "orders"}
    assert Path(calls.folder) == (tmp_path / "exports").resolve()


def test_relative_sqlite_url_is_relative_to_the_config_file(tmp_path: Path) -> None:
    from cxbridge.config import config_from_dict

    doc = {"sources": {"shop": {"adapter": "local-sql", "connection": _sql()}}}
    config = config_from_dict(doc, workspace=tmp_path, env={}, call_hook=False)
    url = config.sources["shop"].connection.url.get_secret_value()
    assert url == f"sqlite:///{(tmp_path / 'shop.db').resolve()}"
