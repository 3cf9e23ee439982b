"""Plugin registration, configuration validation and secrets."""

from __future__ import annotations

import pytest
from cxbridge_hubspot import HubSpotAdapter, HubSpotConfig
from cxbridge_hubspot.config import OAuthAuth

from cxbridge.config import config_from_dict
from cxbridge.errors import ConfigError
from cxbridge.plugins import collect_adapters, collect_routes, get_plugin_manager


def test_entry_point_registers_adapter_and_webhook_route(fake):
    from cxbridge_hubspot.testing import make_context

    pm = get_plugin_manager()
    info = collect_adapters(pm)["hubspot"]
    assert info.config_model is HubSpotConfig
    config = HubSpotConfig(auth={"type": "private_app", "token": "pat-test"})
    assert isinstance(info.factory(config, make_context(fake)), HubSpotAdapter)
    routes = collect_routes(pm)
    assert any(r.path == "/webhooks/hubspot/{source}" and r.methods == ("POST",) and not r.auth
               for r in routes.values())


def test_config_from_toml_shape_with_secret_from_env():
    doc = {"sources": {"hs": {"adapter": "hubspot", "connection": {
        "auth": {"type": "oauth", "client_id": "c", "client_secret": {"env": "HS_SECRET"},
                 "refresh_token": {"env": "HS_REFRESH"}},
        "tier": "professional"}}}}
    cfg = config_from_dict(doc, pm=get_plugin_manager(), env={"HS_SECRET": "s3", "HS_REFRESH": "r1"})
    conn = cfg.sources["hs"].connection
    assert isinstance(conn.auth, OAuthAuth) and conn.auth.client_secret.get_secret_value() == "s3"
    assert conn.ten_secondly_limit == 190 and conn.signing_secret() == "s3"
    assert "s3" not in repr(conn)


def test_typo_in_connection_names_the_key():
    doc = {"sources": {"hs": {"adapter": "hubspot", "connection": {
        "auth": {"type": "private_app", "token": "t"}, "teir": "starter"}}}}
    with pytest.raises(ConfigError) as info:
        config_from_dict(doc, pm=get_plugin_manager(), env={})
    assert "teir" in str(info.value)


def test_unknown_stream_is_a_config_error(make_adapter):
    with pytest.raises(ConfigError) as info:
        make_adapter(streams=["contacts", "leads"])
    assert "leads" in str(info.value) and info.value.key.endswith("connection.streams")
