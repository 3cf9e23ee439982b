"""The adapter contract suite against the local-sql adapter on SQLite, PostgreSQL and MariaDB.

Two configurations per database: the plain keyset on ``party.updated_at``, and the computed modstamp that
also follows ``change_column`` of the related contact-mechanism and address tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from cxlocal_db import CrmDb

from cxbridge.adapters import Adapter
from cxbridge.testing.contract import AdapterHarness, get_adapter_test_class


class SqlHarness(AdapterHarness):
    backend: ClassVar[str] = "sqlite"
    related_change: ClassVar[bool] = False
    stream = "customers"
    page_size = 4
    capabilities = frozenset({"tombstones", "list_ids", "write", "same_modstamp"})
    mutable_field = "first_name"
    writable_field = "cx_tier"

    def __init__(self, tmp_path: Path) -> None:
        self.db = CrmDb(self.backend, tmp_path)

    def make_adapter(self) -> Adapter:
        return self.db.adapter(page_size=self.page_size, related_change=self.related_change)

    def seed(self, n: int, *, modstamp: datetime | None = None) -> list[str]:
        return self.db.add_parties(n, modstamp=modstamp)

    def update(self, ids: Sequence[str], fields: Mapping[str, Any]) -> None:
        self.db.touch_parties(ids, **fields)

    def delete(self, ids: Sequence[str]) -> None:
        self.db.touch_parties(ids, is_deleted=True)

    def read_back(self, object_type: str, source_id: str) -> Mapping[str, Any]:
        return self.db.row(self.db.party, source_id)

    def close(self) -> None:
        self.db.close()


def _harness(backend: str, related_change: bool) -> type[SqlHarness]:
    suffix = "Related" if related_change else ""
    return type(
        f"{backend.title()}{suffix}Harness", (SqlHarness,), {"backend": backend, "related_change": related_change}
    )


TestSqliteContract = get_adapter_test_class(harness=_harness("sqlite", False))
TestSqliteRelatedContract = get_adapter_test_class(harness=_harness("sqlite", True))
TestPostgresContract = get_adapter_test_class(harness=_harness("postgresql", False))
TestPostgresRelatedContract = get_adapter_test_class(harness=_harness("postgresql", True))
TestMariadbContract = get_adapter_test_class(harness=_harness("mariadb", False))
TestMariadbRelatedContract = get_adapter_test_class(harness=_harness("mariadb", True))
