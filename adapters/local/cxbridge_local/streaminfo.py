"""The :class:`~cxbridge.adapters.StreamInfo` of a configured object, shared by both local adapters."""

from __future__ import annotations

from typing import Any

from cxbridge.adapters import StreamInfo

from .config import FileObject, SqlObject

__all__ = ["stream_info"]


def stream_info(
    name: str, obj: SqlObject | FileObject, *, incremental: bool, supports_deletes: bool
) -> StreamInfo:
    """The stream of object ``name``: its mapping, with ``customer_ref`` defaulting to the configured column."""
    mapping: dict[str, Any] = dict(obj.mapping)
    if obj.entity == "interaction" and obj.customer_ref_column and "customer_ref" not in mapping:
        mapping["customer_ref"] = obj.customer_ref_column
    return StreamInfo(
        name=name,
        object_type=obj.object_type or name,
        entity=obj.entity,
        default_mapping=mapping,
        customer_object=obj.customer_object,
        incremental=incremental,
        supports_deletes=supports_deletes,
    )
