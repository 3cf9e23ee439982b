"""``cxbridge web`` as a user runs it: a process serving the configured workspace, stopped by a signal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

CONFIG = """
[store]
url = "sqlite:///ws.db"

[daemon]
host = "127.0.0.1"
port = 1
auth_token = { env = "CXB_WEB_TEST_TOKEN" }

[sources.hs]
adapter = "hubspot"
[sources.hs.connection]
auth = { type = "private_app", token = "pat-test" }
base_url = "http://127.0.0.1:9"
webhook_client_secret = "s3cret"
"""


def _serve(tmp_path: Path) -> tuple[subprocess.Popen[str], str, list[str]]:
    (tmp_path / "cxbridge.toml").write_text(CONFIG)
    env = {**os.environ, "CXB_WEB_TEST_TOKEN": "tok-123"}
    cxbridge = Path(sys.executable).with_name("cxbridge")
    proc = subprocess.Popen([str(cxbridge), "--config", str(tmp_path / "cxbridge.toml"), "web", "--port", "0"],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    found = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "serving http://" in line:
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(30):
        proc.kill()
        pytest.fail("cxbridge web did not start:\n" + "".join(lines))
    url = re.search(r"serving (http://\S+)", "".join(lines)).group(1)  # type: ignore[union-attr]
    return proc, url, lines


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_web_serves_the_workspace_and_stops_cleanly_on_a_signal(tmp_path, sig):
    proc, url, lines = _serve(tmp_path)
    try:
        assert not url.endswith(":0")  # the port actually bound is shown
        health = httpx.get(f"{url}/health", timeout=10)
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok" and body["store"] == {"reachable": True, "backend": "sqlite"}
        assert body["streams"] == {} and body["outbox"] == {}
        metrics = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
        assert "cxbridge_store_up 1" in metrics and "cxbridge_customers 0" in metrics
        # the HubSpot receiver is mounted with the bridge: an unsigned delivery is refused
        hook = httpx.post(f"{url}/webhooks/hubspot/hs", content=b"[]", timeout=10)
        assert hook.status_code == 401
        assert (tmp_path / "ws.db").exists()  # the workspace's store, relative to the config file
    finally:
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
    assert code == 0, "".join(lines)
    assert any("stopped" in line for line in lines)
