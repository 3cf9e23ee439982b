"""The built-in identity decision (a default plugin, overridable: ``trylast=True``).

Deterministic linking: a candidate that shares no key with an existing golden customer gets a new one
(or stays where it is); one match links to it; several distinct matches are merged into the oldest golden id
(ids are time-sortable, so the smallest id is the oldest; it is stable: merging never changes the survivor of
an earlier merge), the others become aliases.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..hookspecs import hookimpl
from ..hooktypes import IdentityCandidate, IdentityDecision, IdentityMatch

__all__ = ["decide", "resolve_identity"]


def decide(candidate: IdentityCandidate, matches: Sequence[IdentityMatch]) -> IdentityDecision:
    """The deterministic v1 decision (see the module docs)."""
    ids = {m.customer_id for m in matches}
    if candidate.current_customer_id:
        ids.add(candidate.current_customer_id)
    if not ids:
        return IdentityDecision(action="new", rule="new")
    rule = _rule(matches)
    if len(ids) == 1:
        (only,) = ids
        if only == candidate.current_customer_id and not matches:
            rule = "kept"
        return IdentityDecision(action="link", customer_id=only, rule=rule)
    survivor = min(ids)
    return IdentityDecision(
        action="merge", customer_id=survivor, merge_ids=tuple(sorted(ids - {survivor})), rule=rule
    )


def _rule(matches: Sequence[IdentityMatch]) -> str:
    if not matches:
        return "kept"
    key = matches[0].keys[0] if matches[0].keys else ""
    kind, _, rest = key.partition(":")
    return "xid:" + rest.split(":", 1)[0] if kind == "xid" else (kind or "kept")


@hookimpl(trylast=True)
def resolve_identity(candidate: IdentityCandidate, matches: Sequence[IdentityMatch]) -> IdentityDecision:
    """Link, create or merge deterministically (see :func:`decide`)."""
    return decide(candidate, matches)
