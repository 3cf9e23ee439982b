"""Fixtures for the local adapter tests: a fresh normalized CRM database per test and backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cxlocal_db import BACKENDS, CrmDb


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CrmDb]:
    """A CrmDb on SQLite, PostgreSQL and MariaDB in turn (servers that are absent skip with the reason)."""
    crm = CrmDb(request.param, tmp_path)
    try:
        yield crm
    finally:
        crm.close()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[CrmDb]:
    crm = CrmDb("sqlite", tmp_path)
    try:
        yield crm
    finally:
        crm.close()
