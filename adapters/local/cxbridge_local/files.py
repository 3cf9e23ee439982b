"""``local-files``: a folder of CSV / JSONL exports (a call centre's nightly dump) as a cxbridge source.

Each file is processed once. The stream's :attr:`Cursor.state` is::

    {"done": {"<sha256>": "<relative path>", ...},
     "current": {"file": "<relative path>", "sha256": "<sha256>", "row": <rows consumed>} | null}

- A file whose content hash is in ``done`` is skipped, whatever its name: re-dropping a file changes nothing.
  A changed file under the same name has a new hash and is processed again (the engine upserts by id).
- Files are streamed row by row, never loaded whole; every page's cursor records the file and the row offset,
  so after a crash the run resumes at the first row not committed (CSV offsets count CSV records, so quoted
  multi-line fields are fine).
- Malformed rows (wrong column count, undecodable bytes, bad JSON, missing id, bad modstamp) are yielded as
  records whose fields are ``{"__error__": "<reason>", "__raw__": "<original text>"}`` with source id
  ``<file>#<row>``; the sync engine quarantines them and the rest of the file goes on.
- The cursor carries no modstamp (files are not ordered by time); the position lives in ``state`` only.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cxbridge.adapters import Adapter, AdapterContext, CheckResult, Cursor, Page, StreamInfo
from cxbridge.errors import AdapterError
from cxbridge.models import SourceRecord

from .config import FileObject, LocalFilesConfig
from .streaminfo import stream_info

__all__ = ["ERROR_KEY", "RAW_KEY", "LocalFilesAdapter", "sha256_file"]

log = logging.getLogger(__name__)

ERROR_KEY = "__error__"
RAW_KEY = "__raw__"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Content hash of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _parse_stamp(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) / (1000 if abs(value) > 1e11 else 1)
        return datetime.fromtimestamp(seconds, tz=UTC)
    text = str(value).strip()
    if text.replace(".", "", 1).isdigit():
        return _parse_stamp(float(text))
    stamp = datetime.fromisoformat(text)
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


@dataclass
class _Row:
    """One raw row: its 1-based offset in the file, parsed fields or an error, and the original text."""

    offset: int
    fields: dict[str, Any] | None
    raw: str
    error: str | None = None


def _csv_rows(path: Path, obj: FileObject) -> Iterator[_Row]:
    with path.open(newline="", encoding=obj.encoding, errors="replace") as fh:
        captured: list[str] = []

        def lines() -> Iterator[str]:
            for line in fh:
                captured.append(line)
                yield line

        reader = csv.reader(lines(), delimiter=obj.delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _Row(0, None, "".join(captured), f"unreadable header: {exc}")
            return
        header = [h.strip() for h in header]
        if obj.id_column not in header:
            yield _Row(0, None, "".join(captured), f"header has no id column {obj.id_column!r} (has: {header})")
            return
        captured.clear()
        offset = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                offset += 1
                raw, captured[:] = "".join(captured), []
                yield _Row(offset, None, raw, f"unparseable CSV: {exc}")
                if not raw:
                    return
                continue
            offset += 1
            raw, captured[:] = "".join(captured), []
            if not row or row == [""]:
                continue
            if "\ufffd" in raw:
                yield _Row(offset, None, raw, f"undecodable bytes for encoding {obj.encoding}")
            elif len(row) != len(header):
                yield _Row(offset, None, raw, f"expected {len(header)} columns, got {len(row)}")
            else:
                yield _Row(offset, dict(zip(header, row, strict=True)), raw)


def _jsonl_rows(path: Path, obj: FileObject) -> Iterator[_Row]:
    with path.open(encoding=obj.encoding, errors="replace") as fh:
        for offset, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield _Row(offset, None, line, f"bad JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(value, dict):
                yield _Row(offset, None, line, f"expected a JSON object, got {type(value).__name__}")
                continue
            yield _Row(offset, value, line)


class LocalFilesAdapter(Adapter):
    """Reads CSV / JSONL files dropped into a folder, each file once."""

    capabilities = frozenset()

    def __init__(self, config: LocalFilesConfig, context: AdapterContext) -> None:
        super().__init__(config, context)
        self.config: LocalFilesConfig = config
        self.folder = Path(config.folder)

    def streams(self) -> list[StreamInfo]:
        return [
            stream_info(name, obj, incremental=True, supports_deletes=obj.deleted_column is not None)
            for name, obj in self.config.objects.items()
        ]

    def check(self, required_fields: Mapping[str, Iterable[str]]) -> list[CheckResult]:
        """The drop folder is readable, each pattern's matches, and the archive folder is writable."""
        if not self.folder.is_dir() or not os.access(self.folder, os.R_OK | os.X_OK):
            return [CheckResult("folder", False, f"drop folder {str(self.folder)!r} missing or not readable")]
        results = [CheckResult("folder", True, str(self.folder))]
        for name, obj in self.config.objects.items():
            matches = [p for p in self.folder.glob(obj.pattern) if p.is_file()]
            results.append(CheckResult(f"stream {name}", True, f"{len(matches)} file(s) match {obj.pattern!r}"))
        archive = self.config.archive_folder
        if archive is not None:
            target = Path(archive)
            parent = target if target.exists() else target.parent
            ok = parent.is_dir() and os.access(parent, os.W_OK)
            results.append(CheckResult("archive", ok, str(target) if ok else f"{str(target)!r} is not writable"))
        for object_type in required_fields:
            results.append(CheckResult(f"write-back {object_type}", False, "file drops are read-only"))
        return results

    # ------------------------------------------------------------------------------------------------ files

    def _object(self, stream: str) -> FileObject:
        try:
            return self.config.objects[stream]
        except KeyError:
            raise AdapterError(
                f"unknown stream {stream!r}; configured: {', '.join(self.config.objects)}",
                source=self.context.source,
                kind="config",
            ) from None

    def _candidates(self, obj: FileObject) -> list[Path]:
        if not self.folder.is_dir():
            raise AdapterError(
                f"drop folder {str(self.folder)!r} does not exist", source=self.context.source, kind="config"
            )
        files = [p for p in self.folder.glob(obj.pattern) if p.is_file()]
        if self.config.settle_seconds:
            horizon = self.context.now().timestamp() - self.config.settle_seconds
            files = [p for p in files if p.stat().st_mtime <= horizon]
        if self.config.order == "mtime":
            return sorted(files, key=lambda p: (p.stat().st_mtime_ns, str(p)))
        return sorted(files, key=lambda p: str(p.relative_to(self.folder)))

    def _archive(self, path: Path, sha: str) -> None:
        if self.config.archive_folder is None or not path.exists():
            return
        target = Path(self.config.archive_folder) / path.relative_to(self.folder)
        if target.exists():
            target = target.with_name(f"{target.stem}.{sha[:12]}{target.suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(target))
        log.info("archived processed file", extra={"source": self.context.source, "file": str(target)})

    def _format(self, obj: FileObject, path: Path) -> str:
        if obj.format != "auto":
            return obj.format
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson", ".json"):
            return "jsonl"
        return "csv"

    # ------------------------------------------------------------------------------------------------ records

    def _record(self, stream: str, obj: FileObject, rel: str, row: _Row, mtime: datetime) -> SourceRecord:
        object_type = obj.object_type or stream
        error, fields = row.error, row.fields
        sid = ""
        modstamp = mtime
        if error is None and fields is not None:
            sid = str(fields.get(obj.id_column) or "").strip()
            if not sid:
                error = f"missing id in column {obj.id_column!r}"
            elif obj.modstamp_column and fields.get(obj.modstamp_column) not in (None, ""):
                try:
                    modstamp = _parse_stamp(fields[obj.modstamp_column])
                except (ValueError, TypeError, OverflowError):
                    error = f"bad timestamp in {obj.modstamp_column!r}: {fields[obj.modstamp_column]!r}"
        if error is not None or fields is None:
            return SourceRecord.model_construct(
                source=self.context.source,
                object_type=object_type,
                source_id=f"{rel}#{row.offset}",
                modstamp=mtime,
                fields={ERROR_KEY: f"{rel} row {row.offset}: {error}", RAW_KEY: row.raw.rstrip("\r\n")},
                deleted=False,
                merged_into=None,
                associations={},
            )
        deleted = bool(
            obj.deleted_column
            and str(fields.get(obj.deleted_column, "")).strip().lower() in {v.lower() for v in obj.deleted_values}
        )
        assoc: dict[str, list[str]] = {}
        if obj.customer_ref_column and fields.get(obj.customer_ref_column) not in (None, ""):
            assoc[obj.customer_object or "customers"] = [str(fields[obj.customer_ref_column]).strip()]
        # model_construct: the hot path builds values that already satisfy the model (aware UTC modstamps)
        return SourceRecord.model_construct(
            source=self.context.source,
            object_type=object_type,
            source_id=sid,
            modstamp=modstamp,
            fields={} if deleted else fields,
            deleted=deleted,
            merged_into=None,
            associations=assoc,
        )

    def read(self, stream: str, cursor: Cursor, *, full: bool = False) -> Iterator[Page]:
        """Yield pages of the stream's unprocessed files (see the module docs for the state).

        ``full=True`` processes every present file again; its pages carry ``"pass"`` (hashes done in this
        pass) so a full pass interrupted by a crash resumes where it stopped, and a last empty page clears it.
        """
        obj = self._object(stream)
        done: dict[str, str] = dict(cursor.state.get("done") or {})
        in_pass = full and "pass" in cursor.state
        full_pass: list[str] = list(cursor.state.get("pass") or []) if in_pass else []
        current: dict[str, Any] | None = cursor.state.get("current") if (in_pass or not full) else None
        size = self.config.page_size
        files = self._candidates(obj)
        if current:  # the file a crashed run was in comes first
            resume_file = current.get("file")
            files.sort(key=lambda p: str(p.relative_to(self.folder)) != resume_file)
        seen_this_run: set[str] = set(full_pass)

        def state(position: dict[str, Any] | None) -> dict[str, Any]:
            out: dict[str, Any] = {"done": dict(done), "current": position}
            if full:
                out["pass"] = list(full_pass)
            return out

        for path in files:
            rel = str(path.relative_to(self.folder))
            try:
                sha = sha256_file(path)
                mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
            except FileNotFoundError:
                continue  # moved away meanwhile
            if sha in seen_this_run or (not full and sha in done):
                self._archive(path, sha)
                continue
            seen_this_run.add(sha)
            start = 0
            if current and current.get("file") == rel and current.get("sha256") == sha:
                start = int(current.get("row") or 0)
            current = None
            rows = _jsonl_rows(path, obj) if self._format(obj, path) == "jsonl" else _csv_rows(path, obj)
            records: list[SourceRecord] = []
            offset = start
            for row in rows:
                if start and row.offset <= start:
                    continue
                records.append(self._record(stream, obj, rel, row, mtime))
                offset = row.offset
                if len(records) >= size:
                    yield Page(
                        records, Cursor(state=state({"file": rel, "sha256": sha, "row": offset})), api_calls=0
                    )
                    records = []
            done[sha] = rel
            full_pass.append(sha)
            yield Page(records, Cursor(state=state(None)), api_calls=0)
            self._archive(path, sha)
        if full:
            yield Page([], Cursor(state={"done": dict(done), "current": None}), api_calls=0)
