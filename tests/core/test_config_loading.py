"""Loading cxbridge.toml: secrets, env overrides, two-step validation and errors that name the key."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from cxbridge import hookimpl
from cxbridge.adapters import Adapter, AdapterInfo, Cursor, StreamInfo
from cxbridge.config import Config, ConfigValidationError, config_from_dict, load_config
from cxbridge.errors import ConfigError
from cxbridge.hooktypes import SettingsInfo, TraitInfo
from cxbridge.plugins import get_plugin_manager
from cxbridge.secrets import registry

SECRET = "tok-9f8e7d6c5b4a-SECRET"


class CrmConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: SecretStr
    base_url: str = "https://crm.example"
    mode: Literal["live", "sandbox"] = "live"
    timeout: int = 30
    drop_folder: Path = Path("drops")
    db_url: str = "sqlite:///mirror.db"
    vault_url: SecretStr | None = None


class CrmAdapter(Adapter):
    def streams(self) -> list[StreamInfo]:
        return [StreamInfo("contacts", "contacts", "customer")]

    def read(self, stream: str, cursor: Cursor, *, full: bool = False) -> Any:
        return iter(())


class DemoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reporting_currency: str = "EUR"
    tiers: int = 3


class NeedsKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: SecretStr


class DemoPlugin:
    def __init__(self) -> None:
        self.loaded: list[tuple[Any, dict[str, Any]]] = []

    @hookimpl
    def register_adapters(self) -> list[AdapterInfo]:
        return [AdapterInfo("fake-crm", CrmConnection, lambda cfg, ctx: CrmAdapter(cfg, ctx))]

    @hookimpl
    def register_settings(self) -> list[SettingsInfo]:
        return [SettingsInfo("demo", DemoSettings)]

    @hookimpl
    def register_traits(self) -> list[TraitInfo]:
        return [TraitInfo("demo.tier"), TraitInfo("demo.score", "number")]

    @hookimpl
    def config_loaded(self, config: Any, settings: Any) -> None:
        self.loaded.append((config, dict(settings)))


@pytest.fixture
def plugin() -> DemoPlugin:
    return DemoPlugin()


@pytest.fixture
def pm(plugin: DemoPlugin) -> Any:
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(plugin, name="demo-plugin")
    return manager


GOOD = """
[store]
url = "sqlite:///data/cx.db"

[identity]
match_on = ["email"]
survivorship = "most_recent"
source_priority = ["crm"]
default_region = "de"

[sync]
lookback_seconds = 60

[sources.crm]
adapter = "fake-crm"
interval_seconds = 120
daily_quota_share = 0.5
[sources.crm.connection]
token = { env = "CRM_TOKEN" }
mode = "sandbox"
vault_url = "sqlite:///vault.db"
[sources.crm.streams.contacts]
mapping = { first_name = "fname", emails = ["email", "email2"], "external_ids.erp_no" = "erp" }

[plugins.demo]
reporting_currency = "CHF"

[[writeback]]
trait = "demo.tier"
source = "crm"
object_type = "contacts"
field = "cx_tier"
transform = { gold = "GOLD", "*" = "OTHER" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cxbridge.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_good_config_loads_with_models_defaults_and_resolved_paths(
    tmp_path: Path, pm: Any, plugin: DemoPlugin
) -> None:
    config = load_config(write(tmp_path, GOOD), pm=pm, env={"CRM_TOKEN": SECRET})

    assert config.path == (tmp_path / "cxbridge.toml").resolve()
    assert config.workspace == tmp_path.resolve()
    assert config.store.url == f"sqlite:///{(tmp_path / 'data' / 'cx.db').resolve()}"
    assert config.identity.default_region == "DE"
    assert config.identity.survivorship == "most_recent"
    assert config.sync.lookback_seconds == 60 and config.sync.safety_margin_seconds == 5

    crm = config.sources["crm"]
    assert isinstance(crm.connection, CrmConnection)
    assert crm.connection.token.get_secret_value() == SECRET
    assert crm.connection.mode == "sandbox"
    # relative Path settings and SQLite URLs in the adapter's model are made absolute against the workspace
    assert crm.connection.drop_folder == (tmp_path / "drops").resolve()
    assert crm.connection.db_url == f"sqlite:///{(tmp_path / 'mirror.db').resolve()}"
    assert crm.connection.vault_url.get_secret_value() == f"sqlite:///{(tmp_path / 'vault.db').resolve()}"
    assert crm.interval_seconds == 120 and crm.daily_quota_share == 0.5 and crm.enabled
    assert crm.streams["contacts"].mapping["emails"] == ["email", "email2"]
    assert config.lookback_seconds("crm") == 60

    assert isinstance(config.plugins["demo"], DemoSettings)
    assert config.plugins["demo"].reporting_currency == "CHF"
    rule = config.writeback[0]
    assert (rule.consent, rule.overwrite_human_edits) == ("processing", False)
    assert [rule.apply("gold"), rule.apply("silver"), rule.apply(None)] == ["GOLD", "OTHER", None]
    assert config.required_fields("crm") == {"contacts": ["cx_tier"]}
    assert set(config.source_secrets("crm")) == {SECRET, crm.connection.vault_url.get_secret_value()}
    assert SECRET in registry

    # the config_loaded hook saw the validated config and settings
    assert len(plugin.loaded) == 1 and plugin.loaded[0][0] is config
    assert plugin.loaded[0][1]["demo"].reporting_currency == "CHF"


def test_missing_plugin_table_gets_defaults(tmp_path: Path, pm: Any) -> None:
    config = load_config(write(tmp_path, "[store]\nurl = 'sqlite:///x.db'\n"), pm=pm, env={})
    assert config.plugins["demo"] == DemoSettings()
    assert config.sources == {} and config.writeback == []


def test_missing_env_var_names_key_and_variable(tmp_path: Path, pm: Any) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD), pm=pm, env={})
    assert err.value.key == "sources.crm.connection.token"
    assert "CRM_TOKEN" in str(err.value) and "not set" in str(err.value)


def test_file_secret_relative_to_config(tmp_path: Path, pm: Any) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "crm").write_text(SECRET + "\n", encoding="utf-8")
    text = GOOD.replace('token = { env = "CRM_TOKEN" }', 'token = { file = "secrets/crm" }')
    config = load_config(write(tmp_path, text), pm=pm, env={})
    assert config.sources["crm"].connection.token.get_secret_value() == SECRET

    (tmp_path / "secrets" / "crm").unlink()
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), pm=pm, env={})
    assert err.value.key == "sources.crm.connection.token" and "does not exist" in str(err.value)


def test_env_overrides_nested_keys(tmp_path: Path, pm: Any) -> None:
    env = {
        "CRM_TOKEN": SECRET,
        "CXBRIDGE_STORE__URL": "postgresql+psycopg://cx@db.internal/cx",
        "CXBRIDGE_SOURCES__CRM__ENABLED": "false",
        "CXBRIDGE_SOURCES__CRM__CONNECTION__TIMEOUT": "5",
        "CXBRIDGE_IDENTITY__MATCH_ON": '["phone"]',
        "CXBRIDGE_LOAD_PLUGINS": "not-a-config-key",
    }
    config = load_config(write(tmp_path, GOOD), pm=pm, env=env)
    assert config.store.url == "postgresql+psycopg://cx@db.internal/cx"
    assert config.sources["crm"].enabled is False
    assert config.enabled_sources() == {}
    assert config.sources["crm"].connection.timeout == 5
    assert config.identity.match_on == ["phone"]


@pytest.mark.parametrize(
    ("replace", "key", "expected"),
    [
        # a typo in a framework key: names the key and lists the allowed keys of that table
        ("interval_seconds = 120", "sources.crm.intervall_seconds", ["interval_seconds", "daily_quota_share"]),
        # a wrong literal value: the allowed values
        ('survivorship = "most_recent"', "identity.survivorship", ["'source_priority'", "'most_complete'"]),
        # out of range
        ("daily_quota_share = 0.5", "sources.crm.daily_quota_share", ["less than or equal to 1", "1.5"]),
        # a typo inside the adapter's own table
        ('mode = "sandbox"', "sources.crm.connection.mood", ["allowed keys here", "mode", "token"]),
        # a wrong literal in the adapter's table
        ('mode = "sandbox"', "sources.crm.connection.mode", ["'live' or 'sandbox'", "'prod'"]),
        # write-back consent
        ('field = "cx_tier"', "writeback[0].consent", ["'processing'", "'email'"]),
        ('default_region = "de"', "identity.default_region", ["unknown region"]),
    ],
)
def test_bad_values_name_the_key_and_allowed_values(
    tmp_path: Path, pm: Any, replace: str, key: str, expected: list[str]
) -> None:
    bad = {
        "sources.crm.intervall_seconds": "intervall_seconds = 120",
        "identity.survivorship": 'survivorship = "loudest"',
        "sources.crm.daily_quota_share": "daily_quota_share = 1.5",
        "sources.crm.connection.mood": 'mood = "sandbox"',
        "sources.crm.connection.mode": 'mode = "prod"',
        "writeback[0].consent": 'field = "cx_tier"\nconsent = "carrier-pigeon"',
        "identity.default_region": 'default_region = "XX"',
    }[key]
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD.replace(replace, bad)), pm=pm, env={"CRM_TOKEN": SECRET})
    assert err.value.key == key
    for fragment in expected:
        assert fragment in str(err.value)
    assert SECRET not in str(err.value)


def test_unknown_adapter_lists_installed(tmp_path: Path, pm: Any) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD.replace('"fake-crm"', '"hubspto"')), pm=pm, env={"CRM_TOKEN": SECRET})
    assert err.value.key == "sources.crm.adapter"
    assert "'hubspto'" in str(err.value) and "installed adapters: fake-crm" in str(err.value)


def test_unknown_plugin_namespace_lists_known(tmp_path: Path, pm: Any) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(
            write(tmp_path, GOOD.replace("[plugins.demo]", "[plugins.demos]")), pm=pm, env={"CRM_TOKEN": SECRET}
        )
    assert err.value.key == "plugins.demos" and "known namespaces: demo" in str(err.value)


def test_writeback_rules_checked_against_sources_and_traits(tmp_path: Path, pm: Any) -> None:
    text = GOOD.replace('trait = "demo.tier"', 'trait = "demo.teir"').replace('source = "crm"', 'source = "crn"')
    with pytest.raises(ConfigValidationError) as err:
        load_config(write(tmp_path, text), pm=pm, env={"CRM_TOKEN": SECRET})
    problems = dict(err.value.problems)
    assert "unknown source 'crn'; configured sources: crm" in problems["writeback[0].source"]
    assert "demo.teir" in problems["writeback[0].trait"] and "demo.tier" in problems["writeback[0].trait"]


def test_source_priority_must_name_sources(tmp_path: Path, pm: Any) -> None:
    text = GOOD.replace('source_priority = ["crm"]', 'source_priority = ["crm", "shop"]')
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), pm=pm, env={"CRM_TOKEN": SECRET})
    assert err.value.key == "identity.source_priority[1]"


def test_wrong_type_of_secret_value_is_not_shown(pm: Any) -> None:
    data = {"sources": {"crm": {"adapter": "fake-crm", "connection": {"token": 12345678987654321}}}}
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, pm=pm, env={})
    assert err.value.key == "sources.crm.connection.token"
    assert "12345678987654321" not in str(err.value) and "hidden" in str(err.value)


def test_settings_model_with_required_field_errors_when_table_missing(pm: Any) -> None:
    class NeedsKeyPlugin:
        @hookimpl
        def register_settings(self) -> list[SettingsInfo]:
            return [SettingsInfo("keyed", NeedsKey)]

    pm.register(NeedsKeyPlugin())
    with pytest.raises(ConfigError) as err:
        config_from_dict({}, pm=pm, env={})
    assert err.value.key == "plugins.keyed.api_key" and "missing" in str(err.value)
    config = config_from_dict({"plugins": {"keyed": {"api_key": {"env": "K"}}}}, pm=pm, env={"K": "key-123456"})
    assert config.plugins["keyed"].api_key.get_secret_value() == "key-123456"


def test_invalid_toml_and_missing_file(tmp_path: Path, pm: Any) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", pm=pm, env={})
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 2"):
        load_config(write(tmp_path, "[store]\nurl = \n"), pm=pm, env={})


def test_bad_source_name(pm: Any) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"sources": {"My Shop": {"adapter": "fake-crm", "connection": {"token": "x"}}}}, pm=pm)
    assert err.value.key == "sources" and "lowercase" in str(err.value)


def test_json_schema_of_framework_keys() -> None:
    schema = Config.model_json_schema()
    assert set(schema["properties"]) == {"store", "identity", "sync", "sources", "plugins", "writeback", "daemon"}
    assert schema["$defs"]["SourceConfig"]["additionalProperties"] is False
