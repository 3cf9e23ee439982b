"""local-files: idempotent drops, changed files, malformed rows, crash mid-file, archive, settling."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cxbridge_local.config import LocalFilesConfig
from cxbridge_local.files import ERROR_KEY, RAW_KEY, LocalFilesAdapter

from cxbridge.adapters import Cursor
from cxbridge.testing.contract import drain, make_test_context

HEADER = "call_id,caller,phone,note,updated_at\n"


def _adapter(folder: Path, **over: Any) -> LocalFilesAdapter:
    obj = {"pattern": "**/*.csv", "id_column": "call_id", "modstamp_column": "updated_at", "entity": "interaction"}
    obj.update(over.pop("obj", {}))
    config = LocalFilesConfig.model_validate(
        {"folder": str(folder), "page_size": 3, "objects": {"calls": obj}, **over}
    )
    return LocalFilesAdapter(config, make_test_context("callcentre", now=lambda: datetime(2024, 6, 1, tzinfo=UTC)))


def _write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(n: int, start: int = 1, note: str = "hello") -> list[str]:
    return [f"K{i},Caller {i},+49301{i:05d},{note},2024-05-0{1 + i % 9}T10:00:00" for i in range(start, start + n)]


def test_redropping_a_file_changes_nothing(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    _write(drop / "calls-0501.csv", _rows(5))
    adapter = _adapter(drop)
    records, cursor, _ = drain(adapter, "calls")
    assert [r.source_id for r in records] == ["K1", "K2", "K3", "K4", "K5"]
    assert records[0].fields["note"] == "hello" and records[0].modstamp == datetime(2024, 5, 2, 10, tzinfo=UTC)
    assert drain(adapter, "calls", cursor)[0] == []
    shutil.copy(drop / "calls-0501.csv", drop / "calls-0501 (copy).csv")  # same content, other name
    (drop / "calls-0501.csv").touch()  # re-dropped: newer mtime, same content
    again, cursor2, _ = drain(adapter, "calls", cursor)
    assert again == []
    assert dict(cursor2.state) == dict(cursor.state)


def test_changed_file_with_same_name_is_processed_again(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    path = _write(drop / "calls.csv", _rows(2))
    adapter = _adapter(drop)
    _, cursor, _ = drain(adapter, "calls")
    _write(path, _rows(3, note="updated"))
    records, cursor, _ = drain(adapter, "calls", cursor)
    assert [(r.source_id, r.fields["note"]) for r in records] == [
        ("K1", "updated"),
        ("K2", "updated"),
        ("K3", "updated"),
    ]
    assert len(cursor.state["done"]) == 2, "both contents are remembered by hash"
    assert cursor.modstamp is None, "file streams keep their position in state only"


def test_malformed_rows_are_marked_and_the_rest_goes_on(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    _write(
        drop / "a.csv",
        [
            "K1,Ann,+4930111,ok,2024-05-01T10:00:00",
            "K2,Bob,+4930222,one,too,many,2024-05-01T10:00:00",
            ",NoId,+4930333,x,2024-05-01T10:00:00",
            "K4,Cid,+4930444,x,yesterday",
            'K5,"Dee ""the"" caller",+4930555,"multi\nline note",2024-05-01T11:00:00',
            "K6,Eve,+4930666,last,2024-05-01T12:00:00",
        ],
    )
    (drop / "b.jsonl").write_text(
        '{"call_id": "J1", "caller": "Jo"}\n{"call_id": "J2", \n[1, 2]\n\n{"call_id": "J3"}\n', encoding="utf-8"
    )
    adapter = _adapter(drop)
    records, _, _ = drain(adapter, "calls")
    errors = {r.source_id: r.fields for r in records if ERROR_KEY in r.fields}
    good = [r.source_id for r in records if ERROR_KEY not in r.fields]
    assert good == ["K1", "K5", "K6"]
    assert set(errors) == {"a.csv#2", "a.csv#3", "a.csv#4"}
    assert "expected 5 columns, got 7" in errors["a.csv#2"][ERROR_KEY]
    assert errors["a.csv#2"][RAW_KEY] == "K2,Bob,+4930222,one,too,many,2024-05-01T10:00:00"
    assert "missing id" in errors["a.csv#3"][ERROR_KEY]
    assert "bad timestamp" in errors["a.csv#4"][ERROR_KEY] and "yesterday" in errors["a.csv#4"][RAW_KEY]
    k5 = next(r for r in records if r.source_id == "K5")
    assert k5.fields["note"] == "multi\nline note" and k5.fields["caller"] == 'Dee "the" caller'

    _write(drop / "c.csv", ["x,y"], header="id,name\n")
    records_c = [r for r in drain(_adapter(drop, obj={"pattern": "c.csv"}), "calls")[0]]
    assert [r.source_id for r in records_c] == ["c.csv#0"]
    assert "header has no id column 'call_id'" in records_c[0].fields[ERROR_KEY]

    adapter = _adapter(drop, obj={"pattern": "*.jsonl"})
    records, _, _ = drain(adapter, "calls")
    assert [r.source_id for r in records] == ["J1", "b.jsonl#2", "b.jsonl#3", "J3"]
    assert "bad JSON" in records[1].fields[ERROR_KEY] and records[1].fields[RAW_KEY] == '{"call_id": "J2", '
    assert "expected a JSON object" in records[2].fields[ERROR_KEY]
    assert records[3].modstamp is not None, "no modstamp column value: the file's mtime"


def test_crash_mid_file_resumes_at_the_row(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    _write(drop / "0001.csv", _rows(8))
    _write(drop / "0002.csv", _rows(2, start=20))
    adapter = _adapter(drop)
    gen = adapter.read("calls", Cursor())
    first = next(gen)
    second = next(gen)
    gen.close()  # kill -9 after the second page was committed
    assert second.cursor.state["current"] == {
        "file": "0001.csv",
        "sha256": second.cursor.state["current"]["sha256"],
        "row": 6,
    }
    resumed, last, _ = drain(_adapter(drop), "calls", second.cursor)
    ids = [r.source_id for r in first.records + second.records + resumed]
    assert ids == [f"K{i}" for i in range(1, 9)] + ["K20", "K21"], "every row once, in order"
    assert last.state["current"] is None and len(last.state["done"]) == 2


def test_archive_moves_processed_files(tmp_path: Path) -> None:
    drop, archive = tmp_path / "drop", tmp_path / "archive"
    _write(drop / "sub" / "calls.csv", _rows(4))
    adapter = _adapter(drop, archive_folder=str(archive))
    gen = adapter.read("calls", Cursor())
    pages = [next(gen), next(gen)]
    assert (drop / "sub" / "calls.csv").exists(), "not archived before its last page was taken"
    assert list(gen) == []
    assert not (drop / "sub" / "calls.csv").exists() and (archive / "sub" / "calls.csv").exists()
    _write(drop / "sub" / "calls.csv", _rows(4))  # dropped again
    assert drain(adapter, "calls", pages[-1].cursor)[0] == []
    assert (archive / "sub" / "calls.csv").exists()
    assert not (drop / "sub" / "calls.csv").exists(), "already-processed content is archived too"
    assert len(list((archive / "sub").iterdir())) == 2


def test_files_still_being_written_wait_to_settle(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    path = _write(drop / "calls.csv", _rows(2))
    now = datetime(2024, 6, 1, tzinfo=UTC).timestamp()
    os.utime(path, (now - 5, now - 5))
    assert drain(_adapter(drop, settle_seconds=30), "calls")[0] == []
    os.utime(path, (now - 60, now - 60))
    assert len(drain(_adapter(drop, settle_seconds=30), "calls")[0]) == 2


def test_missing_folder_and_unknown_stream_are_config_errors(tmp_path: Path) -> None:
    from cxbridge.errors import AdapterError

    adapter = _adapter(tmp_path / "nope")
    with pytest.raises(AdapterError, match="does not exist") as exc:
        drain(adapter, "calls")
    assert exc.value.kind == "config"
    with pytest.raises(AdapterError, match="unknown stream"):
        drain(adapter, "tickets")


def test_full_read_reprocesses_present_files_and_check_reports(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    _write(drop / "a.csv", _rows(2))
    _write(drop / "b.csv", _rows(1, start=5))
    adapter = _adapter(drop, archive_folder=str(tmp_path / "archive"))
    _, cursor, _ = drain(_adapter(drop), "calls")
    again, full_cursor, _ = drain(_adapter(drop), "calls", cursor, full=True)
    assert [r.source_id for r in again] == ["K1", "K2", "K5"]
    assert dict(full_cursor.state["done"]) == dict(cursor.state["done"]) and "pass" not in full_cursor.state
    # a full pass interrupted after a.csv resumes with b.csv only
    gen = _adapter(drop).read("calls", cursor, full=True)
    first = next(gen)
    gen.close()
    assert [r.source_id for r in first.records] == ["K1", "K2"] and len(first.cursor.state["pass"]) == 1
    rest, _, _ = drain(_adapter(drop), "calls", first.cursor, full=True)
    assert [r.source_id for r in rest] == ["K5"]
    checks = {c.name: c for c in adapter.check({"calls": ["note"]})}
    assert checks["folder"].ok and checks["stream calls"].detail.startswith("2 file(s)")
    assert checks["archive"].ok
    assert not checks["write-back calls"].ok
    assert not _adapter(tmp_path / "missing").check({})[0].ok
