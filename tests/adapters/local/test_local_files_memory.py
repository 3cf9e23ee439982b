"""Memory stays flat in the size of a dropped file (ARCHITECTURE §8): the file is streamed, never loaded."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from cxbridge_local.config import LocalFilesConfig
from cxbridge_local.files import LocalFilesAdapter

from cxbridge.adapters import Cursor
from cxbridge.testing.contract import make_test_context


@pytest.mark.slow
def test_large_export_is_streamed_in_pages(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    rows = 100_000
    with (drop / "big.csv").open("w", encoding="utf-8") as fh:
        fh.write("id,name,email,notes\n")
        for i in range(rows):
            fh.write(f"{i},Name {i},user{i}@example.com,{'x' * 80}\n")
    size_mb = (drop / "big.csv").stat().st_size / 1e6
    adapter = LocalFilesAdapter(
        LocalFilesConfig.model_validate(
            {"folder": str(drop), "page_size": 1000, "objects": {"rows": {"pattern": "*.csv", "id_column": "id"}}}
        ),
        make_test_context("big"),
    )
    tracemalloc.start()
    seen = 0
    for page in adapter.read("rows", Cursor()):
        seen += len(page.records)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen == rows
    assert size_mb > 10
    assert peak < 8e6, f"peak {peak / 1e6:.1f} MB while streaming a {size_mb:.0f} MB file"
