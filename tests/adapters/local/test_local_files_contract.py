"""The adapter contract suite against the local-files adapter (CSV and JSONL drops)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from cxbridge_local.config import LocalFilesConfig
from cxbridge_local.files import LocalFilesAdapter

from cxbridge.adapters import Adapter
from cxbridge.testing.contract import AdapterHarness, get_adapter_test_class, make_test_context

COLUMNS = ["call_id", "caller", "phone", "note", "deleted", "updated_at"]


class FilesHarness(AdapterHarness):
    """Each seed / update / delete is a new export file dropped into the folder (names sort in drop order)."""

    fmt: ClassVar[str] = "csv"
    stream = "calls"
    page_size = 4
    capabilities = frozenset({"tombstones", "same_modstamp"})
    cursor_kind = "state"
    mutable_field = "note"

    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "drop"
        self.folder.mkdir()
        self.rows: dict[str, dict[str, str]] = {}
        self.files = 0
        self.counter = 0
        self.now = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)

    def make_adapter(self) -> Adapter:
        config = LocalFilesConfig.model_validate(
            {
                "folder": str(self.folder),
                "page_size": self.page_size,
                "objects": {
                    "calls": {
                        "pattern": f"*.{self.fmt}",
                        "id_column": "call_id",
                        "entity": "interaction",
                        "modstamp_column": "updated_at",
                        "deleted_column": "deleted",
                    }
                },
            }
        )
        return LocalFilesAdapter(config, make_test_context("callcentre"))

    def _drop(self, rows: list[dict[str, str]]) -> None:
        self.files += 1
        path = self.folder / f"export-{self.files:04d}.{self.fmt}"
        with path.open("w", newline="", encoding="utf-8") as fh:
            if self.fmt == "csv":
                writer = csv.DictWriter(fh, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
            else:
                fh.writelines(json.dumps(r) + "\n" for r in rows)

    def _stamp(self) -> str:
        self.now += timedelta(seconds=1)
        return self.now.isoformat()

    def seed(self, n: int, *, modstamp: datetime | None = None) -> list[str]:
        rows = []
        for _ in range(n):
            self.counter += 1
            cid = f"C{self.counter:05d}"
            row = {
                "call_id": cid,
                "caller": f"Caller {self.counter}",
                "phone": f"+4930{self.counter:06d}",
                "note": "first call",
                "deleted": "",
                "updated_at": modstamp.isoformat() if modstamp else self._stamp(),
            }
            self.rows[cid] = row
            rows.append(dict(row))
        self._drop(rows)
        return [r["call_id"] for r in rows]

    def update(self, ids: Sequence[str], fields: Mapping[str, Any]) -> None:
        for cid in ids:
            self.rows[cid].update({k: str(v) for k, v in fields.items()}, updated_at=self._stamp())
        self._drop([dict(self.rows[c]) for c in ids])

    def delete(self, ids: Sequence[str]) -> None:
        self.update(ids, {"deleted": "1"})

    def read_back(self, object_type: str, source_id: str) -> Mapping[str, Any]:
        return self.rows[source_id]


class JsonlHarness(FilesHarness):
    fmt = "jsonl"


TestCsvDropContract = get_adapter_test_class(harness=FilesHarness)
TestJsonlDropContract = get_adapter_test_class(harness=JsonlHarness)
