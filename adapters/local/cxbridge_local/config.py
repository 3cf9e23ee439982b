"""Configuration models of the local adapters (``[sources.<name>.connection]`` in ``cxbridge.toml``).

Both models use ``extra="forbid"``: a misspelled key fails at start naming the key. Secrets (the database URL
usually contains a password) are :class:`~pydantic.SecretStr`; write ``url = { env = "SHOP_DB_URL" }`` and
the config loader resolves it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = [
    "CreateTarget",
    "FileObject",
    "LocalFilesConfig",
    "LocalSqlConfig",
    "RelatedTable",
    "SqlObject",
]

Entity = Literal["customer", "organization", "interaction", "other"]
Mapping_ = dict[str, str | list[str]]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RelatedTable(_Config):
    """Values of a record that live in another table (normalized schemas).

    ``emails = { table = "contact_mechanism", fk = "party_id", value = "value", where = { kind = "email" } }``
    puts the list of ``value`` s of the party's email rows into the record field ``emails``;
    ``addresses = { table = "address", fk = "party_id", columns = { line1 = "street", city = "city" } }``
    puts a list of dicts (``{"line1": ..., "city": ...}``) into ``addresses``.
    """

    table: str = Field(description="Related table name.")
    db_schema: str | None = Field(None, alias="schema", description="Schema of the table (default: the URL's).")
    fk: str = Field(description="Column of the related table holding the parent record's id.")
    value: str | None = Field(None, description="Column whose values become a list of scalars.")
    columns: dict[str, str] | list[str] | None = Field(
        None, description="Output key -> column (or a list of columns); each row becomes a dict."
    )
    where: dict[str, Any] = Field(default_factory=dict, description="Equality filters: column -> value.")
    order_by: str | None = Field(None, description="Column ordering the values (e.g. a 'primary' flag, a rank).")
    descending: bool = Field(False, description="Order descending (true for 'is_primary' style flags).")
    change_column: str | None = Field(
        None,
        description="Modification time of related rows; the record's modstamp is the newest of the parent's "
        "and these, so an edited email row re-reads its party.",
    )

    @model_validator(mode="after")
    def _one_shape(self) -> RelatedTable:
        if (self.value is None) == (self.columns is None):
            raise ValueError("give exactly one of 'value' (list of scalars) or 'columns' (list of dicts)")
        return self

    def column_map(self) -> dict[str, str]:
        """Output key -> column."""
        if self.value is not None:
            return {"value": self.value}
        if isinstance(self.columns, list):
            return {c: c for c in self.columns}
        return dict(self.columns or {})


class SqlObject(_Config):
    """One stream of the SQL source: a table mapped declaratively."""

    table: str = Field(description="Table holding the records.")
    db_schema: str | None = Field(None, alias="schema", description="Schema (PostgreSQL) or database (MySQL).")
    object_type: str | None = Field(None, description="Object type of the records (default: the stream name).")
    entity: Entity = Field("customer", description="What the records become in the canonical model.")
    id_column: str = Field("id", description="Primary key column (one column).")
    change_column: str | None = Field(
        None, description="Modification time column (updated_at) for incremental reads; none = full reads."
    )
    soft_delete_column: str | None = Field(
        None, description="Column marking deleted rows (is_deleted, deleted_at)."
    )
    deleted_value: Any = Field(
        None, description="Value meaning 'deleted' in soft_delete_column; unset = any non-NULL value (deleted_at)."
    )
    reconcile_deletes: bool = Field(
        False, description="Rows are hard-deleted: the engine reconciles ids (list_ids) periodically."
    )
    customer_ref_column: str | None = Field(None, description="For interactions: column with the customer's id.")
    customer_object: str | None = Field(None, description="For interactions: the object type customer_ref names.")
    columns: list[str] | None = Field(None, description="Columns to read (default: all).")
    related: dict[str, RelatedTable] = Field(default_factory=dict, description="Record field -> related table.")
    mapping: Mapping_ = Field(default_factory=dict, description="Default field map (canonical -> source field).")
    writable_columns: list[str] | None = Field(
        None, description="Columns write-back may update (default: every column but id and change column)."
    )
    touch_on_write: bool = Field(
        True, description="Set change_column to now on write-back, as a CRM would (our writes come back once)."
    )
    insert_defaults: dict[str, Any] = Field(
        default_factory=dict, description="Column -> value for rows inserted by upsert ops (NOT NULL columns)."
    )
    erase_mode: Literal["delete", "anonymize"] = Field("delete", description="What erase() does with the row.")
    anonymize: dict[str, Any] = Field(
        default_factory=dict, description="For erase_mode = 'anonymize': column -> replacement value (often null)."
    )
    page_size: int | None = Field(None, ge=1, le=100_000, description="Rows per page (default: the source's).")

    @model_validator(mode="after")
    def _deletes(self) -> SqlObject:
        if self.soft_delete_column and self.reconcile_deletes:
            raise ValueError("give soft_delete_column or reconcile_deletes = true, not both")
        if self.erase_mode == "anonymize" and not self.anonymize:
            raise ValueError("erase_mode = 'anonymize' needs 'anonymize' (column -> replacement value)")
        return self


class CreateTarget(_Config):
    """Where ``create`` write ops (closed-loop tasks and notes) are inserted."""

    table: str
    db_schema: str | None = Field(None, alias="schema")
    id_column: str = "id"
    columns: dict[str, str] = Field(
        default_factory=dict, description="Op field (subject, body, due_at, priority...) -> column."
    )
    customer_ref_column: str | None = Field(None, description="Column receiving the associated customer's id.")
    defaults: dict[str, Any] = Field(default_factory=dict, description="Column -> constant for every insert.")


class LocalSqlConfig(_Config):
    """``adapter = "local-sql"``: an on-prem CRM database reachable through a SQLAlchemy URL."""

    url: SecretStr = Field(description="SQLAlchemy URL, e.g. sqlite:///shop.db or { env = 'CRM_DB_URL' }.")
    objects: dict[str, SqlObject] = Field(description="Stream name -> table mapping, in sync order.")
    page_size: int = Field(1000, ge=1, le=100_000, description="Rows per page.")
    create: dict[str, CreateTarget] = Field(
        default_factory=dict, description="Object type of create ops ('task', 'note') -> table."
    )
    connect_args: dict[str, Any] = Field(default_factory=dict, description="Extra DBAPI connect arguments.")

    @model_validator(mode="after")
    def _some(self) -> LocalSqlConfig:
        if not self.objects:
            raise ValueError("'objects' must map at least one stream to a table")
        return self


class FileObject(_Config):
    """One stream of the file drop: the files matching ``pattern`` in the drop folder."""

    pattern: str = Field(description="Glob relative to the folder, e.g. 'calls/*.csv' or '*.jsonl'.")
    format: Literal["auto", "csv", "jsonl"] = Field("auto", description="auto = by file extension.")
    object_type: str | None = Field(None, description="Object type of the records (default: the stream name).")
    entity: Entity = "customer"
    id_column: str = Field(description="Field holding the record id.")
    modstamp_column: str | None = Field(None, description="Field with the change time (default: file mtime).")
    deleted_column: str | None = Field(None, description="Field marking deletions (tombstones).")
    deleted_values: list[str] = Field(default_factory=lambda: ["true", "1", "yes", "y", "deleted"])
    customer_ref_column: str | None = None
    customer_object: str | None = None
    mapping: Mapping_ = Field(default_factory=dict)
    delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: str = Field("utf-8-sig", description="utf-8-sig accepts the BOM Excel writes.")


class LocalFilesConfig(_Config):
    """``adapter = "local-files"``: a folder where another system drops CSV / JSONL exports."""

    folder: Path = Field(description="The drop folder.")
    objects: dict[str, FileObject] = Field(description="Stream name -> file pattern and columns.")
    page_size: int = Field(1000, ge=1, le=100_000)
    archive_folder: Path | None = Field(None, description="Move processed files here (off by default).")
    order: Literal["name", "mtime"] = Field(
        "name", description="Processing order of new files: by name (timestamped export names) or mtime."
    )
    settle_seconds: float = Field(
        0.0, ge=0, description="Skip files modified less than this long ago (still being written)."
    )

    @model_validator(mode="after")
    def _some(self) -> LocalFilesConfig:
        if not self.objects:
            raise ValueError("'objects' must map at least one stream to a file pattern")
        return self
