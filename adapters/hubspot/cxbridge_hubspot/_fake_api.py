"""Endpoint implementations of :class:`cxbridge_hubspot.testing.FakeHubSpot` (split out to keep modules small).

Each function mirrors one documented HubSpot endpoint; see the citations in :mod:`cxbridge_hubspot.testing`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from .testing import _err, _Rec, _s, iso_ms, modstamp_property

if TYPE_CHECKING:
    from .testing import FakeHubSpot

SEARCH_CAP = 10_000  # https://developers.hubspot.com/docs/api/crm/search (10,000 results per query)
BATCH_LIMIT = 100


def route(fake: FakeHubSpot, request: httpx.Request, path: str, body: Any) -> httpx.Response:
    m = request.method
    parts = [p for p in path.split("/") if p]
    if m == "GET" and path.startswith("/oauth/v1/access-tokens/"):
        token = parts[-1]
        if token not in fake.access_tokens:
            return _err(404, "token not found", "OBJECT_NOT_FOUND")
        return httpx.Response(200, json={"token": token, "hub_id": fake.portal_id, "scopes": fake.scopes,
                                         "token_type": "access", "app_id": 1, "user": "owner@example.com",
                                         "expires_in": max(0, (fake.access_tokens[token] - fake.clock.ms())
                                                           // 1000)})
    if m == "POST" and path == "/oauth/v2/private-apps/get/access-token-info":
        return httpx.Response(200, json={"userId": 1, "hubId": fake.portal_id, "appId": 2, "scopes": fake.scopes})
    if m == "GET" and parts[:3] == ["crm", "v3", "properties"] and len(parts) == 4:
        props = fake.properties.get(parts[3])
        if props is None:
            return _err(400, f"Unable to infer object type from: {parts[3]}", "VALIDATION_ERROR")
        return httpx.Response(200, json={"results": list(props.values())})
    if m == "POST" and path == "/crm/v3/objects/contacts/gdpr-delete":
        return gdpr_delete(fake, body)
    if parts[:3] == ["crm", "v4", "associations"] and len(parts) == 7 and parts[5:] == ["batch", "read"]:
        return assoc_read(fake, parts[3], parts[4], body)
    if parts[:3] == ["crm", "v3", "objects"] and len(parts) >= 4:
        obj = parts[3]
        if obj not in fake.objects:
            return _err(400, f"Unable to infer object type from: {obj}", "VALIDATION_ERROR")
        rest = parts[4:]
        if m == "GET" and not rest:
            return list_objects(fake, obj, request)
        if m == "POST" and rest == ["search"]:
            return search(fake, obj, body)
        if m == "POST" and len(rest) == 2 and rest[0] == "batch":
            inputs = body.get("inputs") or []
            if len(inputs) > BATCH_LIMIT:
                return _err(400, f"Batch size {len(inputs)} exceeds limit of {BATCH_LIMIT}", "VALIDATION_ERROR")
            handler = {"read": batch_read, "update": batch_update, "upsert": batch_upsert,
                       "create": batch_create}.get(rest[1])
            if handler is not None:
                return handler(fake, obj, body)
    return _err(404, f"No route for {m} {path}", "OBJECT_NOT_FOUND")


def to_json(fake: FakeHubSpot, rec: _Rec, props: list[str] | None, snapshot: dict[str, Any] | None = None,
            modified: int | None = None, associations: list[str] | None = None) -> dict[str, Any]:
    values = snapshot if snapshot is not None else rec.props
    stamp = rec.modified if modified is None else modified
    mod_prop = modstamp_property(rec.type)
    base = {"hs_object_id": str(rec.id), "createdate": iso_ms(rec.created), mod_prop: iso_ms(stamp)}
    wanted = props if props else list(values)
    out: dict[str, Any] = {k: values.get(k) for k in wanted}
    out.update(base)
    if "hs_merged_object_ids" in values:
        out.setdefault("hs_merged_object_ids", values["hs_merged_object_ids"])
    data: dict[str, Any] = {"id": str(rec.id), "properties": out, "createdAt": iso_ms(rec.created),
                            "updatedAt": iso_ms(stamp), "archived": rec.archived_at is not None}
    if rec.archived_at is not None:
        data["archivedAt"] = iso_ms(rec.archived_at)
    if associations:
        links = fake.assoc.get((rec.type, rec.id), {})
        data["associations"] = {
            t: {"results": [{"id": str(i), "type": f"{rec.type[:-1]}_to_{t[:-1]}"} for i in sorted(links[t])]}
            for t in associations if links.get(t)
        }
    return data


def list_objects(fake: FakeHubSpot, obj: str, request: httpx.Request) -> httpx.Response:
    # https://developers.hubspot.com/docs/api/crm/contacts -- GET list: limit max 100, paging.next.after.
    q = request.url.params
    limit = int(q.get("limit", "10"))
    if limit > 100:
        return _err(400, "limit must be less than or equal to 100", "VALIDATION_ERROR")
    archived = q.get("archived", "false") == "true"
    after = int(q.get("after") or 0)
    props = [p for p in q.get("properties", "").split(",") if p]
    assocs = [a for a in q.get("associations", "").split(",") if a]
    recs = sorted((r for r in fake.objects[obj].values()
                   if (r.archived_at is not None) == archived and r.id >= after), key=lambda r: r.id)
    page = recs[:limit]
    data: dict[str, Any] = {"results": [to_json(fake, r, props, associations=assocs) for r in page]}
    if len(recs) > limit:
        data["paging"] = {"next": {"after": str(recs[limit].id), "link": "?after=" + str(recs[limit].id)}}
    return httpx.Response(200, json=data)


def _value(prop: str, raw: Any) -> Any:
    if raw is None:
        return None
    if isinstance(raw, (int, float)):
        return float(raw)
    text = str(raw)
    if prop == "hs_object_id" or _NUMBER.fullmatch(text):
        return float(text)
    if _ISO.match(text):
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000
    return text.lower()


_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T")


class _View:
    """Property values of one search candidate without copying the snapshot."""

    __slots__ = ("base", "extra")

    def __init__(self, base: dict[str, Any], extra: dict[str, Any]) -> None:
        self.base, self.extra = base, extra

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.extra:
            return self.extra[key]
        return self.base.get(key, default)


_OPS = {"EQ": lambda a, b: a == b, "NEQ": lambda a, b: a != b, "GT": lambda a, b: a > b,
        "GTE": lambda a, b: a >= b, "LT": lambda a, b: a < b, "LTE": lambda a, b: a <= b}


def _compile(flt: dict[str, Any]) -> Any:
    """One search filter -> ``(values) -> bool`` (the filter value is parsed once per query)."""
    op, prop = flt.get("operator", "EQ"), flt["propertyName"]
    if op == "HAS_PROPERTY":
        return lambda values: values.get(prop) is not None
    if op == "NOT_HAS_PROPERTY":
        return lambda values: values.get(prop) is None
    if op == "IN":
        wanted = {_value(prop, v) for v in flt.get("values", [])}
        return lambda values: _value(prop, values.get(prop)) in wanted
    want, cmp = _value(prop, flt.get("value")), _OPS.get(op)

    def check(values: Any) -> bool:
        have = _value(prop, values.get(prop))
        if have is None or want is None or cmp is None:
            return False
        try:
            return bool(cmp(have, want))
        except TypeError:
            return False

    return check


def search(fake: FakeHubSpot, obj: str, body: dict[str, Any]) -> httpx.Response:
    # https://developers.hubspot.com/docs/api/crm/search: limit <= 200; 5 filter groups, 10 filters per group,
    # 25 filters in all (changelog 2024-08: breaking-change-expanded-filtering-capabilities...); 10,000 cap.
    limit = int(body.get("limit", 10))
    if limit > 200:
        return _err(400, "limit must be less than or equal to 200", "VALIDATION_ERROR")
    groups = body.get("filterGroups") or []
    if len(groups) > 5 or any(len(g.get("filters", [])) > 10 for g in groups) or sum(
        len(g.get("filters", [])) for g in groups
    ) > 25:
        return _err(400, "Too many filters or filter groups", "VALIDATION_ERROR")
    sorts = body.get("sorts") or []
    if len(sorts) > 1:  # the adapter never relies on more than one sort
        return _err(400, "Only one sort is supported", "VALIDATION_ERROR")
    offset = int(body.get("after") or 0)
    if offset >= SEARCH_CAP:
        return _err(400, "The search API cannot return more than 10000 results; narrow the query "
                         f"(after={offset}).", "VALIDATION_ERROR")
    lag_ms = int(fake.search_index_lag * 1000)
    now = fake.clock.ms()
    visible: list[tuple[_Rec, dict[str, Any], int, Any]] = []
    mod_prop = modstamp_property(obj)
    compiled = [[_compile(f) for f in g.get("filters", [])] for g in groups]
    for rec in fake.objects[obj].values():
        if rec.archived_at is not None:
            continue
        if rec.history[-1][0] + lag_ms <= now:
            stamp, snap = rec.history[-1]
        else:
            indexed = [h for h in rec.history if h[0] + lag_ms <= now]
            if not indexed:
                continue
            stamp, snap = indexed[-1]
        values = _View(snap, {"hs_object_id": rec.id, mod_prop: stamp, "createdate": rec.created})
        if not compiled or any(all(f(values) for f in g) for g in compiled):
            visible.append((rec, snap, stamp, values))

    def scramble(rec: _Rec) -> int:  # ties come back in no particular order
        return (rec.id * 2654435761) % 4294967296

    if sorts:
        prop = sorts[0]["propertyName"]
        desc = sorts[0].get("direction", "ASCENDING") == "DESCENDING"
        visible.sort(key=lambda t: (_value(prop, t[3].get(prop)) or 0, scramble(t[0])), reverse=desc)
    else:
        visible.sort(key=lambda t: t[0].id)
    end = min(offset + limit, SEARCH_CAP)
    page = visible[offset:end]
    props = body.get("properties") or []
    data: dict[str, Any] = {
        "total": len(visible),
        "results": [to_json(fake, r, props, snapshot=s, modified=st) for r, s, st, _ in page],
    }
    if len(visible) > offset + limit:
        data["paging"] = {"next": {"after": str(offset + limit)}}
    return httpx.Response(200, json=data)


def _traced(data: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    if item.get("objectWriteTraceId"):
        data["objectWriteTraceId"] = item["objectWriteTraceId"]
    return data


def _resolve(fake: FakeHubSpot, obj: str, raw_id: str) -> _Rec | None:
    try:
        oid = int(raw_id)
    except ValueError:
        return None
    oid = fake.merged_into.get((obj, oid), oid)
    rec = fake.objects[obj].get(oid)
    return rec if rec is not None and rec.archived_at is None else None


def _not_found(obj: str, ids: list[str]) -> dict[str, Any]:
    return {"status": "error", "category": "OBJECT_NOT_FOUND",
            "message": f"Could not get some {obj[:-1].upper()} objects, they may be deleted or not exist. "
                       "Check that ids are valid.", "context": {"ids": ids}}


def _batch_response(results: list[dict[str, Any]], errors: list[dict[str, Any]], ok: int = 200) -> httpx.Response:
    data: dict[str, Any] = {"status": "COMPLETE", "results": results,
                            "startedAt": "2024-01-01T00:00:00Z", "completedAt": "2024-01-01T00:00:00Z"}
    if errors:
        data["errors"], data["numErrors"] = errors, len(errors)
        return httpx.Response(207, json=data)
    return httpx.Response(ok, json=data)


def batch_read(fake: FakeHubSpot, obj: str, body: dict[str, Any]) -> httpx.Response:
    props = body.get("properties") or []
    results, missing, seen = [], [], set()
    for item in body.get("inputs", []):
        rec = _resolve(fake, obj, str(item.get("id")))
        if rec is None:
            missing.append(str(item.get("id")))
        elif rec.id not in seen:  # a merged id answers with the survivor (its own id)
            seen.add(rec.id)
            results.append(to_json(fake, rec, props))
    return _batch_response(results, [_not_found(obj, missing)] if missing else [])


def _validate(fake: FakeHubSpot, obj: str, inputs: list[dict[str, Any]]) -> httpx.Response | None:
    errors = []
    for item in inputs:
        for name in item.get("properties", {}):
            spec = fake.properties[obj].get(name)
            if spec is None:
                errors.append({"message": f'Property "{name}" does not exist', "code": "PROPERTY_DOESNT_EXIST",
                               "context": {"propertyName": [name]}})
            elif spec["modificationMetadata"]["readOnlyValue"]:
                errors.append({"message": f'Property "{name}" is read-only', "code": "READ_ONLY_VALUE",
                               "context": {"propertyName": [name]}})
    if errors:
        return _err(400, "Property values were not valid", "VALIDATION_ERROR", errors=errors)
    return None


def batch_update(fake: FakeHubSpot, obj: str, body: dict[str, Any]) -> httpx.Response:
    inputs = body.get("inputs", [])
    bad = _validate(fake, obj, inputs)
    if bad is not None:
        return bad
    results, missing = [], []
    for item in inputs:
        rec = _resolve(fake, obj, str(item.get("id")))
        if rec is None:
            missing.append(str(item.get("id")))
            continue
        rec.props.update({k: _s(v) for k, v in item.get("properties", {}).items()})
        fake._touch(rec, None)
        results.append(_traced(to_json(fake, rec, list(item.get("properties", {}))), item))
    return _batch_response(results, [_not_found(obj, missing)] if missing else [])


def _email_owner(fake: FakeHubSpot, obj: str, props: dict[str, Any], skip: int | None) -> _Rec | None:
    email = (props.get("email") or "").lower()
    if obj != "contacts" or not email:
        return None
    for rec in fake.objects[obj].values():
        if rec.id != skip and rec.archived_at is None and (rec.props.get("email") or "").lower() == email:
            return rec
    return None


def _conflict(rec: _Rec) -> httpx.Response:
    # A 409 names the existing record: "Contact already exists. Existing ID: <id>".
    return _err(409, f"Contact already exists. Existing ID: {rec.id}", "CONFLICT",
                errors=[{"message": f"A contact with this email already exists. Existing ID: {rec.id}",
                         "in": "email"}])


def batch_upsert(fake: FakeHubSpot, obj: str, body: dict[str, Any]) -> httpx.Response:
    inputs = body.get("inputs", [])
    bad = _validate(fake, obj, inputs)
    if bad is not None:
        return bad
    plan = []
    for item in inputs:
        prop = item.get("idProperty")
        spec = fake.properties[obj].get(prop or "")
        if spec is None or not spec["hasUniqueValue"]:
            return _err(400, f"idProperty {prop!r} is not a unique property", "VALIDATION_ERROR")
        value = str(item.get("id"))
        rec = next((r for r in fake.objects[obj].values()
                    if r.archived_at is None and str(r.props.get(prop)) == value), None)
        props = dict(item.get("properties", {}))
        owner = _email_owner(fake, obj, props, rec.id if rec else None)
        if owner is not None:
            return _conflict(owner)
        plan.append((rec, prop, value, props))
    results = []
    for (rec, prop, value, props), item in zip(plan, inputs, strict=True):
        new = rec is None
        if rec is None:
            rec = fake.objects[obj][int(fake.add(obj, {prop: value, **props}))]
        else:
            rec.props.update({k: _s(v) for k, v in props.items()})
            fake._touch(rec, None)
        data = to_json(fake, rec, [*props, prop])
        data["new"] = new
        results.append(_traced(data, item))
    return _batch_response(results, [])


def batch_create(fake: FakeHubSpot, obj: str, body: dict[str, Any]) -> httpx.Response:
    inputs = body.get("inputs", [])
    bad = _validate(fake, obj, inputs)
    if bad is not None:
        return bad
    for item in inputs:
        owner = _email_owner(fake, obj, item.get("properties", {}), None)
        if owner is not None:
            return _conflict(owner)
        for link in item.get("associations", []):
            to_id = str(link.get("to", {}).get("id"))
            if _resolve(fake, "contacts", to_id) is None:
                return _err(400, f"Object {to_id} to associate with does not exist", "VALIDATION_ERROR")
    results = []
    for item in inputs:
        new_id = int(fake.add(obj, item.get("properties", {})))
        for link in item.get("associations", []):
            fake.associate(obj, new_id, "contacts", int(link["to"]["id"]))
        results.append(_traced(to_json(fake, fake.objects[obj][new_id], list(item.get("properties", {}))), item))
    return _batch_response(results, [], ok=201)


def assoc_read(fake: FakeHubSpot, from_type: str, to_type: str, body: dict[str, Any]) -> httpx.Response:
    # https://developers.hubspot.com/docs/api-reference/legacy/crm/associations/associate-records/batch/get-associations
    inputs = body.get("inputs", [])
    if len(inputs) > 1000:
        return _err(400, "Batch size exceeds limit of 1000", "VALIDATION_ERROR")
    results, empty = [], []
    for item in inputs:
        oid = int(item["id"])
        links = fake.assoc.get((from_type, oid), {}).get(to_type, set())
        if not links:
            empty.append(str(oid))
            continue
        results.append({"from": {"id": str(oid)}, "to": [
            {"toObjectId": i, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 1, "label": None}]}
            for i in sorted(links)]})
    errors = [{"status": "error", "category": "OBJECT_NOT_FOUND", "message": "No associations found",
               "context": {"fromObjectId": empty}}] if empty else []
    return _batch_response(results, errors)


def gdpr_delete(fake: FakeHubSpot, body: dict[str, Any]) -> httpx.Response:
    # https://developers.hubspot.com/docs/api-reference/crm-contacts-v3/basic/post-crm-v3-objects-contacts-gdpr-delete
    object_id, id_prop = str(body.get("objectId", "")), body.get("idProperty")
    contacts = fake.objects["contacts"]
    if id_prop == "email":
        rec = next((r for r in contacts.values()
                    if (r.props.get("email") or "").lower() == object_id.lower()), None)
        fake.gdpr_deleted.append(object_id)  # unknown emails are blocklisted too
        if rec is not None:
            contacts.pop(rec.id)
        return httpx.Response(204)
    rec = _resolve(fake, "contacts", object_id)
    if rec is None:
        return _err(404, f"Object {object_id} not found", "OBJECT_NOT_FOUND")
    contacts.pop(rec.id)
    fake.gdpr_deleted.append(object_id)
    return httpx.Response(204)
