"""``cxbridge segments report|show|refit`` on an in-memory context."""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
from cxbridge_segments import cli
from cxbridge_segments.settings import SegmentsSettings
from cxbridge_segments.state import clear_states
from segments_fakes import AS_OF, StoreLikeContext, buy, customer
from typer.testing import CliRunner


@pytest.fixture
def ctx():
    clear_states()
    customers = [customer(f"c{i}", emails=[f"c{i}@example.com"], first_name=f"N{i}") for i in range(30)]
    interactions = [buy(f"c{i}", 5 * j + i, 10.0 * (i + 1)) for i in range(1, 30) for j in range(1 + i % 5)]
    settings = SegmentsSettings(as_of=AS_OF, rules={"big": "revenue > 500"})
    context = StoreLikeContext(customers, interactions, settings={"segments": settings}, now=AS_OF)

    @contextmanager
    def factory(_typer_ctx):
        yield context

    cli.set_context_factory(factory)
    yield context
    cli.set_context_factory(None)
    clear_states()


def test_refit_then_report_with_html(ctx, tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli.app, ["refit"])
    assert result.exit_code == 0, result.output
    assert "re-scored 30 customers" in result.output
    assert len(ctx.traits) == 30
    out = tmp_path / "report.html"
    result = runner.invoke(cli.app, ["report", "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert "RFM segments" in result.output and "Value tiers" in result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 4
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    # The distribution in the page matches the traits: the catch-all tier row carries its customer count.
    bronze = sum(1 for t in ctx.traits.values() if t["segments.tier"] == "bronze")
    assert re.search(rf"<td>bronze</td><td>{bronze}</td>", page)
    big = sum(1 for t in ctx.traits.values() if t.get("segments.rule.big"))
    assert f"<td>big</td><td>{big}</td>" in page


def test_show_by_id_and_email(ctx) -> None:
    runner = CliRunner()
    result = runner.invoke(cli.app, ["show", "c29@example.com", "--rescore"])
    assert result.exit_code == 0, result.output
    assert "segments.tier" in result.output and "c29" in result.output
    assert ctx.traits["c29"]["segments.tier"] in result.output
    missing = runner.invoke(cli.app, ["show", "nobody"])
    assert missing.exit_code == 1 and "no customer" in missing.output
