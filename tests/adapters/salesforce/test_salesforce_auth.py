"""Connection: the four login flows, config validation, session refresh once, TLS settings, doctor checks."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cxbridge_salesforce.config import SalesforceConfig
from pydantic import ValidationError
from sf_helpers import drain, ids

from cxbridge.adapters import Cursor
from cxbridge.errors import AuthError


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def _flows(fake, private_key: str) -> dict[str, dict]:
    return {
        "refresh_token": {"flow": "refresh_token", "client_id": fake.client_id,
                          "refresh_token": fake.refresh_token},
        "client_credentials": {"flow": "client_credentials", "client_id": fake.client_id,
                               "client_secret": fake.client_secret},
        "jwt_bearer": {"flow": "jwt_bearer", "client_id": fake.client_id, "username": fake.username,
                       "private_key": private_key},
        "password": {"flow": "password", "username": fake.username, "password": fake.password,
                     "security_token": fake.security_token},
    }


@pytest.mark.parametrize("flow", ["refresh_token", "client_credentials", "jwt_bearer", "password"])
def test_each_flow_logs_in_and_reads(fake, make_adapter, rsa_keys, flow):
    private, public = rsa_keys
    fake.jwt_public_key = public  # the fake verifies the RS256 signature like Salesforce would
    contact = fake.insert("Contact", LastName="Lovelace")
    adapter = make_adapter(auth=_flows(fake, private)[flow])
    pages, _ = drain(adapter, "contacts")
    assert ids(pages) == [contact]
    assert fake.logins == 1


@pytest.mark.parametrize("flow", ["refresh_token", "client_credentials", "jwt_bearer", "password"])
def test_rejected_credentials_are_auth_errors_without_secrets(fake, make_adapter, rsa_keys, flow):
    private, _ = rsa_keys
    auth = _flows(fake, private)[flow]
    fake.refresh_token = fake.client_secret = fake.password = "rotated-elsewhere"
    fake.username = "someone-else@example.com"
    adapter = make_adapter(auth=auth)
    with pytest.raises(AuthError) as err:
        drain(adapter, "contacts")
    assert err.value.kind == "config"
    assert "fake-refresh-token" not in str(err.value) and "hunter2" not in str(err.value)


def test_expired_session_is_refreshed_once_and_the_call_retried(fake, make_adapter):
    seeded = [fake.insert("Contact", LastName=f"L{i}") for i in range(4100)]
    adapter = make_adapter()
    got = []
    for i, page in enumerate(adapter.read("contacts", Cursor())):
        got += [r.source_id for r in page.records]
        if i == 0:
            fake.expire_sessions()  # mid-run: the next nextRecordsUrl call answers 401 INVALID_SESSION_ID
    assert got == seeded
    assert fake.logins == 2


def test_session_rejected_after_fresh_login_is_an_auth_error(fake, make_adapter):
    fake.insert("Contact", LastName="x")
    fake.broken_sessions = True
    with pytest.raises(AuthError):
        drain(make_adapter(), "contacts")
    assert fake.logins == 2, "exactly one refresh, no login loop"


def test_config_rejects_unknown_keys_and_bad_combinations():
    base = {"auth": {"flow": "refresh_token", "client_id": "x", "refresh_token": "y"}}
    with pytest.raises(ValidationError) as err:
        SalesforceConfig.model_validate({**base, "loginurl": "https://x.my.salesforce.com"})
    assert "loginurl" in str(err.value)
    with pytest.raises(ValidationError) as err:
        SalesforceConfig.model_validate({"auth": {"flow": "refresh_token", "client_id": "x",
                                                  "refresh_token": "y", "secret": "z"}})
    assert "secret" in str(err.value)
    with pytest.raises(ValidationError, match="My Domain"):
        SalesforceConfig.model_validate({"auth": {"flow": "client_credentials", "client_id": "x",
                                                  "client_secret": "y"}})
    with pytest.raises(ValidationError, match="exactly one"):
        SalesforceConfig.model_validate({"auth": {"flow": "jwt_bearer", "client_id": "x", "username": "u"}})
    with pytest.raises(ValidationError, match="https"):
        SalesforceConfig.model_validate({**base, "login_url": "http://login.salesforce.com"})
    with pytest.raises(ValidationError) as err:
        SalesforceConfig.model_validate({"auth": {"flow": "oauth_magic"}})
    assert "flow" in str(err.value)
    ok = SalesforceConfig.model_validate({**base, "login_url": "https://test.salesforce.com/",
                                          "api_version": "v60.0"})
    assert ok.login_url == "https://test.salesforce.com" and ok.api_version == "60.0"
    assert ok.secret_values() == ["y"]


def test_tls_trust_from_config_or_environment(fake, make_adapter, monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not really a CA")
    adapter = make_adapter(ca_bundle=str(bundle))
    assert adapter.client.http.verify == str(bundle)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    adapter = make_adapter()
    settings = adapter.client.http.merge_environment_settings(fake.instance_url, {}, None, None, None)
    assert settings["verify"] == str(bundle), "requests picks REQUESTS_CA_BUNDLE up for every call"


def test_instance_url_override(fake, make_adapter):
    fake.insert("Contact", LastName="x")
    adapter = make_adapter(instance_url=fake.instance_url)
    assert len(ids(drain(adapter, "contacts")[0])) == 1
    assert adapter.client.instance_url == fake.instance_url


def test_doctor_checks_login_api_access_and_writeback_fields(fake, make_adapter):
    fake.add_field("Contact", "CX_Tier__c")
    fake.add_field("Contact", "CX_Score__c", updateable=False)
    results = make_adapter().check({"Contact": ["CX_Tier__c", "CX_Score__c", "Missing__c"]})
    by_name = {r.name: r for r in results}
    assert by_name["login"].ok
    assert by_name["api access"].ok and "/15000" in by_name["api access"].detail
    assert not by_name["fields Contact"].ok
    assert "Missing__c" in by_name["fields Contact"].detail and "CX_Score__c" in by_name["fields Contact"].detail
    assert make_adapter().check({"Contact": ["CX_Tier__c"]})[-1].ok
    adapter = make_adapter()
    fake.refresh_token = "revoked-by-admin"
    (login,) = adapter.check({})
    assert not login.ok and "invalid_grant" in login.detail


def test_jwt_audience_follows_the_login_url(rsa_keys):
    import jwt as pyjwt
    from cxbridge_salesforce.auth import _jwt_assertion
    from cxbridge_salesforce.config import JwtBearerAuth

    private, public = rsa_keys
    auth = JwtBearerAuth(client_id="cid", username="u@example.com", private_key=private)
    for login_url, audience in (("https://test.salesforce.com", "https://test.salesforce.com"),
                                ("https://acme.my.salesforce.com", "https://login.salesforce.com")):
        claims = pyjwt.decode(_jwt_assertion(auth, login_url), public, algorithms=["RS256"], audience=audience)
        assert (claims["iss"], claims["sub"]) == ("cid", "u@example.com")


def test_rotated_refresh_token_is_kept_in_the_source_state_and_used_next_time(fake, make_adapter):
    """A connected app with refresh token rotation invalidates the token used at every refresh."""
    from cxbridge_salesforce.auth import ROTATED_REFRESH_TOKEN

    from cxbridge.secrets import redact

    fake.rotate_refresh_tokens = True
    contact = fake.insert("Contact", LastName="Hopper")
    first = make_adapter()
    pages, _ = drain(first, "contacts")
    assert ids(pages) == [contact]
    rotated = first.context.state.get(ROTATED_REFRESH_TOKEN)
    assert rotated == fake.refresh_token == "fake-refresh-token-r1"
    assert redact(f"token {rotated}") == "token ***"

    # A restarted adapter with the same (persistent) state logs in with the rotated token; the configured
    # one no longer works at the fake, exactly as at Salesforce.
    second = make_adapter()
    second.context.state.set(ROTATED_REFRESH_TOKEN, rotated)
    pages, _ = drain(second, "contacts")
    assert ids(pages) == [contact]
    assert second.context.state.get(ROTATED_REFRESH_TOKEN) == fake.refresh_token == "fake-refresh-token-r2"
    assert fake.logins == 2


def test_a_refused_stored_token_falls_back_to_the_configured_one(fake, make_adapter):
    """An admin re-issued the token in the config: the stale stored one is dropped, the configured one used."""
    from cxbridge_salesforce.auth import ROTATED_REFRESH_TOKEN

    adapter = make_adapter()
    adapter.context.state.set(ROTATED_REFRESH_TOKEN, "stale-rotated-token")
    fake.insert("Contact", LastName="Goldberg")
    pages, _ = drain(adapter, "contacts")
    assert len(ids(pages)) == 1
    assert adapter.context.state.get(ROTATED_REFRESH_TOKEN) is None
