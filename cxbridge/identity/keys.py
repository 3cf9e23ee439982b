"""Deterministic match keys of a customer patch (identity resolution v1).

Keys are strings that two records of the same person share:

- ``email:<normalized email>`` (lower-cased, trimmed; see :func:`cxbridge.models.normalize_email`);
- ``phone:<E.164>`` (``+4930123456``; numbers without a country code use ``identity.default_region``);
- ``xid:<name>:<value>`` for every configured cross-system id (``identity.cross_ids``) found in the
  patch's ``external_ids`` -- an ERP customer number present in two CRMs links them.

The mapping has normalized emails and phones already, so building keys is string concatenation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["KeyBuilder", "email_key", "phone_key", "xid_key"]


def email_key(email: str) -> str:
    return f"email:{email}"


def phone_key(phone: str) -> str:
    return f"phone:{phone}"


def xid_key(name: str, value: str) -> str:
    return f"xid:{name}:{value}"


class KeyBuilder:
    """Builds the match keys of flat customer patches.

    :param match_on: which contact keys link records (``email``, ``phone``).
    :param cross_ids: names of ``external_ids`` shared across systems.
    """

    def __init__(self, match_on: Sequence[str] = ("email", "phone"), cross_ids: Sequence[str] = ()) -> None:
        self.emails = "email" in match_on
        self.phones = "phone" in match_on
        self.cross = [(f"xid:{name}:", f"external_ids.{name}") for name in cross_ids]

    def __call__(self, patch: Mapping[str, Any]) -> tuple[str, ...]:
        keys: list[str] = []
        if self.emails:
            for email in patch.get("emails", ()):
                keys.append("email:" + email)
        if self.phones:
            for phone in patch.get("phones", ()):
                keys.append("phone:" + phone)
        for prefix, path in self.cross:
            value = patch.get(path)
            if value is not None and value != "":
                keys.append(prefix + str(value))
        return tuple(keys)

    @staticmethod
    def possible(patch: Mapping[str, Any]) -> frozenset[str]:
        """Every key ``patch`` can have under any configuration: all its emails and phones and every external id
        as a cross-system id. Deleting these removes the keys a record stored even if ``match_on`` or
        ``cross_ids`` changed since (deleting a key that was never stored is harmless)."""
        keys = ["email:" + e for e in patch.get("emails", ())]
        keys.extend("phone:" + p for p in patch.get("phones", ()))
        for path, value in patch.items():
            if path.startswith("external_ids.") and value not in (None, ""):
                keys.append(f"xid:{path[13:]}:{value}")
        return frozenset(keys)

    @staticmethod
    def rule_of(key: str) -> str:
        """The rule name of a key for link reasons: ``email``, ``phone`` or ``xid:<name>``."""
        kind, _, rest = key.partition(":")
        if kind == "xid":
            return "xid:" + rest.split(":", 1)[0]
        return kind
