"""Declarative field maps, compiled once per (source, stream) into a fast callable.

A :data:`~cxbridge.adapters.MappingSpec` maps canonical field paths to source field expressions (see its
docs in :mod:`cxbridge.adapters`). :func:`compile_mapping` checks every target against the stream's entity
(an unknown target is a :class:`~cxbridge.errors.ConfigError` naming the key) and builds a list of small
closures; :meth:`CompiledMapping.__call__` turns a record's raw fields into a **flat patch**::

    {"first_name": "Ann", "emails": ["ann@example.com"], "demographics.country": "DE",
     "external_ids.erp_no": "4711", "custom.loyalty": 3, "addresses": [{"kind": "billing", "city": "Bonn"}]}

Flat dotted keys are what survivorship and provenance work on (one key = one golden field). The patch is
JSON-safe (dates as ISO strings, amounts as decimal strings). A value that does not validate raises
:class:`~cxbridge.errors.RecordError` naming the source field and the target; the engine quarantines that
record and goes on with the page. Source fields the map does not name are never dropped: the raw mirror
(``source_records.fields``) keeps every field, and :meth:`CompiledMapping.unmapped` lists them.

No pydantic model is built per record: values are validated by the plain functions in
:mod:`cxbridge.sync.convert` (ARCHITECTURE §8 budget).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ..adapters import Entity, MappingSpec
from ..errors import ConfigError, RecordError
from . import convert as cv

__all__ = ["CompiledMapping", "compile_mapping", "merge_specs", "nest_patch"]

_ADDRESS_FIELDS = ("kind", "line1", "line2", "city", "region", "postal_code", "country")

_CUSTOMER: dict[str, cv.Converter | None] = {
    "first_name": cv.to_str,
    "last_name": cv.to_str,
    "full_name": cv.to_str,
    "organization_ref": cv.to_id,
    "organization_id": cv.to_id,
    "demographics.birth_date": cv.to_date,
    "demographics.gender": cv.to_str,
    "demographics.locale": cv.to_str,
    "demographics.country": cv.to_str,
    "demographics.industry": cv.to_str,
    "demographics.job_title": cv.to_str,
    "consent.email_opt_out": cv.to_bool,
    "consent.phone_opt_out": cv.to_bool,
    "consent.sms_opt_out": cv.to_bool,
    "consent.processing_opt_out": cv.to_bool,
    "emails": None,  # list targets get their converter in compile_mapping
    "phones": None,
}
_ORGANIZATION: dict[str, cv.Converter | None] = {
    "name": cv.to_str,
    "domain": cv.to_str,
    "industry": cv.to_str,
    "country": cv.to_str,
    "employees": cv.to_int,
    "annual_revenue": cv.to_decimal_str,
}
_INTERACTION: dict[str, cv.Converter | None] = {
    "customer_ref": cv.to_id,
    "channel": cv.to_channel,
    "type": cv.to_interaction_type,
    "occurred_at": cv.to_datetime,
    "direction": cv.to_direction,
    "amount": cv.to_decimal_str,
    "currency": cv.to_currency,
    "subject": cv.to_str,
    "content": cv.to_str,
    "sentiment": cv.to_sentiment,
}
_TARGETS: dict[str, dict[str, cv.Converter | None]] = {
    "customer": _CUSTOMER,
    "organization": _ORGANIZATION,
    "interaction": _INTERACTION,
    "other": {},
}
_OPEN_PREFIXES: dict[str, tuple[str, ...]] = {
    "customer": ("external_ids.", "custom."),
    "organization": ("external_ids.", "custom."),
    "interaction": ("context.", "custom."),
    "other": ("custom.",),
}
_ADDRESS_RE = re.compile(r"^addresses\.(\d+)\.(\w+)$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")

_Getter = Callable[[Mapping[str, Any]], Any]
_Step = Callable[[Mapping[str, Any], dict[str, Any]], None]


def merge_specs(default: MappingSpec, override: MappingSpec | None) -> dict[str, str | list[str]]:
    """The adapter's default map updated by the config's; an empty string in the config removes a target."""
    merged: dict[str, str | list[str]] = dict(default)
    for target, expr in (override or {}).items():
        if expr == "" or expr == []:
            merged.pop(target, None)
        else:
            merged[target] = expr
    return merged


def _getter(path: str) -> _Getter:
    if "." not in path:
        return lambda fields: fields.get(path)
    parts = path.split(".")

    def get(fields: Mapping[str, Any]) -> Any:
        if path in fields:  # a flat key that happens to contain dots ("properties.email" as one column)
            return fields[path]
        value: Any = fields
        for part in parts:
            if isinstance(value, Mapping):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value

    return get


def _fail(target: str, path: str, exc: Exception) -> RecordError:
    return RecordError(f"field {path!r} -> {target}: {exc}", field=path)


def _scalar_step(target: str, paths: list[str], conv: cv.Converter) -> _Step:
    getters = [(p, _getter(p)) for p in paths]
    raw_key = f"custom.{target}_raw"

    def convert(value: Any, path: str, patch: dict[str, Any]) -> None:
        try:
            patch[target] = conv(value)
        except cv.UnknownValue:
            patch[target] = "other"
            patch[raw_key] = cv.jsonable(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise _fail(target, path, exc) from None

    if len(paths) == 1 and "." not in paths[0]:
        # one plain source field (most maps): no getter call; text for a text target needs only a strip
        (path,) = paths
        text = conv is cv.to_str or conv is cv.to_id

        def step1(fields: Mapping[str, Any], patch: dict[str, Any]) -> None:
            value = fields.get(path)
            if value is None:
                return
            if isinstance(value, str):
                stripped = value.strip()
                if not stripped:
                    return
                if text:
                    patch[target] = stripped
                    return
            convert(value, path, patch)

        return step1

    def step(fields: Mapping[str, Any], patch: dict[str, Any]) -> None:
        for path, get in getters:
            value = get(fields)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            convert(value, path, patch)
            return

    return step


def _list_step(target: str, paths: list[str], conv: cv.Converter) -> _Step:
    getters = [(p, _getter(p)) for p in paths]
    single = paths[0] if len(paths) == 1 and "." not in paths[0] else None

    def step(fields: Mapping[str, Any], patch: dict[str, Any]) -> None:
        if single is not None:
            value = fields.get(single)
            if value is None:
                return
            if type(value) is list and len(value) == 1:  # one value (most records): nothing to de-duplicate
                item = value[0]
                if isinstance(item, str) and item.strip():
                    try:
                        patch[target] = [conv(item)]
                    except (ValueError, TypeError) as exc:
                        raise _fail(target, single, exc) from None
                    return
        out: list[str] = []
        for path, get in getters:
            value = get(fields)
            if value is None:
                continue
            items = value if isinstance(value, (list, tuple)) else (
                value.split(";") if isinstance(value, str) and ";" in value else (value,)
            )
            for item in items:
                if item is None or (isinstance(item, str) and not item.strip()):
                    continue
                try:
                    norm = conv(item)
                except (ValueError, TypeError) as exc:
                    raise _fail(target, path, exc) from None
                if norm not in out:
                    out.append(norm)
        if out:
            patch[target] = out

    return step


def _const_step(target: str, value: Any) -> _Step:
    def step(fields: Mapping[str, Any], patch: dict[str, Any]) -> None:
        patch[target] = value

    return step


class CompiledMapping:
    """A field map compiled for one stream. Call it with a record's raw fields to get the flat patch.

    :param entity: the stream's entity.
    :param spec: the merged field map it was compiled from.
    """

    def __init__(self, entity: Entity, spec: dict[str, str | list[str]], steps: list[_Step],
                 address_steps: dict[int, list[_Step]], used_roots: frozenset[str]) -> None:
        self.entity = entity
        self.spec = spec
        self._steps = steps
        self._address_steps = sorted(address_steps.items())
        self._used_roots = used_roots
        self._by_root: dict[str, set[str]] = {}
        for target, expr in spec.items():
            for path in [expr] if isinstance(expr, str) else expr:
                if not path.startswith("="):
                    key = "addresses" if target.startswith("addresses.") else target
                    self._by_root.setdefault(path.split(".", 1)[0], set()).add(key)
                    self._by_root.setdefault(path, set()).add(key)

    def targets_of(self, source_fields: set[str] | frozenset[str]) -> set[str]:
        """The canonical targets (flat patch keys) fed by the given source fields."""
        out: set[str] = set()
        for name in source_fields:
            out |= self._by_root.get(name, set())
        return out

    def __call__(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Map raw ``fields`` to a flat canonical patch.

        :raises RecordError: a value failed validation (the message names the source field and target).
        """
        patch: dict[str, Any] = {}
        for step in self._steps:
            step(fields, patch)
        if self._address_steps:
            addresses = []
            for _index, steps in self._address_steps:
                address: dict[str, Any] = {}
                for step in steps:
                    step(fields, address)
                if any(k != "kind" for k in address):
                    address.setdefault("kind", "other")
                    addresses.append(address)
            if addresses:
                patch["addresses"] = addresses
        return patch

    def unmapped(self, fields: Mapping[str, Any]) -> list[str]:
        """Top-level source fields this map does not read (kept in the raw mirror only)."""
        return sorted(k for k in fields if k not in self._used_roots and not k.startswith("__"))


def compile_mapping(
    spec: MappingSpec,
    entity: Entity,
    *,
    default_region: str | None = None,
    key_prefix: str = "mapping",
) -> CompiledMapping:
    """Compile ``spec`` for a stream of ``entity``.

    :param spec: canonical path -> source expression (``"email"``, ``["phone", "mobile"]``, ``"=purchase"``).
    :param entity: the stream's entity; it fixes which canonical paths are valid.
    :param default_region: region for phone numbers without a country code.
    :param key_prefix: dotted config path of the map, used in error messages.
    :raises ConfigError: an unknown canonical path or a malformed expression (naming the key).
    """
    known = _TARGETS[entity]
    open_prefixes = _OPEN_PREFIXES[entity]
    phone = cv.make_phone(default_region)
    steps: list[_Step] = []
    address_steps: dict[int, list[_Step]] = {}
    used: set[str] = set()
    for target, expr in spec.items():
        key = f"{key_prefix}.{target}"
        paths: list[str]
        if isinstance(expr, str):
            paths = [expr]
        elif isinstance(expr, (list, tuple)) and expr and all(isinstance(e, str) and e for e in expr):
            paths = list(expr)
        else:
            raise ConfigError(f"expected a source field name or a list of names, got {expr!r}", key=key)
        address = _ADDRESS_RE.match(target) if entity == "customer" else None
        conv: cv.Converter
        if address:
            index, sub = int(address.group(1)), address.group(2)
            if sub not in _ADDRESS_FIELDS:
                raise ConfigError(f"unknown address field {sub!r}; use one of {', '.join(_ADDRESS_FIELDS)}",
                                  key=key)
            conv, out_target, bucket = cv.to_str, sub, address_steps.setdefault(index, [])
        elif target in ("emails", "phones") and entity == "customer":
            conv, out_target, bucket = (cv.to_email if target == "emails" else phone), target, steps
        elif target in known:
            conv, out_target, bucket = known[target] or cv.to_str, target, steps
        elif target.startswith(open_prefixes) and _KEY_RE.match(target.split(".", 1)[1]):
            conv = cv.to_id if target.startswith("external_ids.") else cv.jsonable
            out_target, bucket = target, steps
        else:
            allowed = sorted([*known, *(p + "<name>" for p in open_prefixes)]
                             + (["addresses.<n>.<field>"] if entity == "customer" else []))
            raise ConfigError(f"unknown canonical field {target!r} for a {entity} stream; "
                              f"valid: {', '.join(allowed)}", key=key)
        if len(paths) == 1 and paths[0].startswith("="):
            raw = paths[0][1:]
            try:
                value = conv(raw) if not cv.is_empty(raw) else None
            except cv.UnknownValue:
                raise ConfigError(f"constant {raw!r} is not a valid {target}", key=key) from None
            except ValueError as exc:
                raise ConfigError(f"constant {raw!r}: {exc}", key=key) from None
            if target in ("emails", "phones"):
                value = [value]
            bucket.append(_const_step(out_target, value))
            continue
        for path in paths:
            if path.startswith("="):
                raise ConfigError("a constant ('=value') cannot be combined with field names", key=key)
            used.add(path.split(".", 1)[0])
            used.add(path)
        if target in ("emails", "phones") and entity == "customer":
            bucket.append(_list_step(out_target, paths, conv))
        else:
            bucket.append(_scalar_step(out_target, paths, conv))
    return CompiledMapping(entity, dict(spec), steps, address_steps, frozenset(used))


def nest_patch(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a flat patch (``{"demographics.country": "DE"}``) into nested dicts (``{"demographics": {...}}``)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if "." in key:
            head, tail = key.split(".", 1)
            nested.setdefault(head, {})[tail] = value
        else:
            nested[key] = value
    return nested
