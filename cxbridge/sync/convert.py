"""Value converters used by compiled mappings: plain functions, no pydantic in the hot path.

Every converter takes a raw source value (already known to be non-empty) and returns a JSON-safe canonical
value, or raises ``ValueError`` with a short reason; the mapping turns that into a
:class:`~cxbridge.errors.RecordError` naming the source field and the canonical target.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from ..models import Channel, Direction, InteractionType, normalize_email, normalize_phone

__all__ = [
    "Converter",
    "is_empty",
    "jsonable",
    "to_bool",
    "to_channel",
    "to_currency",
    "to_date",
    "to_datetime",
    "to_decimal_str",
    "to_direction",
    "to_email",
    "to_float",
    "to_id",
    "to_int",
    "to_interaction_type",
    "to_sentiment",
    "to_str",
]

Converter = Callable[[Any], Any]

_TRUE = frozenset({"true", "t", "yes", "y", "1", "on", "x", "opt-out", "opted_out", "unsubscribed"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off", "", "opt-in", "opted_in", "subscribed"})


def is_empty(value: Any) -> bool:
    """None, empty / blank strings and empty containers count as missing."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, dict, set)):
        return not value
    return False


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of ``value`` (datetimes and dates as ISO strings, decimals as strings)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def to_str(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected a text value, got {type(value).__name__}")
    return str(value)


def to_id(value: Any) -> str:
    """An identifier (ERP number, record id): ints and integral floats become digits."""
    if isinstance(value, bool):
        raise ValueError(f"not an identifier: {value!r}")
    return to_str(value)


_email_cache = lru_cache(maxsize=65536)(normalize_email)


def to_email(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not an email address: {value!r}")
    return _email_cache(value)


_SEPARATORS = str.maketrans("", "", " -()./\u00a0\t")


@lru_cache(maxsize=512)
def _phone_meta(
    country_code: int | None, region: str | None
) -> tuple[int, str, str | None, Any, Any, Any, str, str] | None:
    """(country code, region, national prefix, pattern, possible lengths, local-only lengths, the code as
    digits, ``+`` and the code) for the fast path, or None where the region's parsing rules need the full
    library (prefix transforms, non-geographic codes)."""
    import re as _re

    import phonenumbers
    from phonenumbers import PhoneMetadata

    if country_code is not None:
        region = phonenumbers.region_code_for_country_code(country_code)
    if not region or region == "001":
        return None
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is None or meta.national_prefix_transform_rule is not None:
        return None
    if meta.national_prefix_for_parsing not in (None, meta.national_prefix):
        return None
    desc = meta.general_desc
    if desc is None or not desc.national_number_pattern or not meta.country_code:
        return None
    pattern = _re.compile(desc.national_number_pattern)
    return (meta.country_code, region, meta.national_prefix, pattern, frozenset(desc.possible_length),
            frozenset(desc.possible_length_local_only or ()), str(meta.country_code), f"+{meta.country_code}")


_CALLING_CODES: frozenset[str] = frozenset()


def _calling_codes() -> frozenset[str]:
    """Every country calling code as digits (``"1"``, ``"49"``, ``"358"``), loaded on first use."""
    global _CALLING_CODES
    if not _CALLING_CODES:
        import phonenumbers

        _CALLING_CODES = frozenset(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    return _CALLING_CODES


def _fast_e164(text: str, default_region: str | None) -> str | None:
    """E.164 for plainly written numbers without the full parser, or None (then the library decides).

    Only cases where the result provably equals ``phonenumbers.parse`` + ``is_possible_number`` take this
    path: ASCII digits with common separators; a national prefix is stripped only when the rest matches the
    region's national number pattern at a possible length; anything else (extensions, letters, leading zeros
    after the country code, regions with prefix transforms) goes to the library. A test compares both paths.
    """
    s = text.translate(_SEPARATORS)
    if s[:2] == "00":
        s = "+" + s[2:]
    if s[:1] == "+":
        digits = s[1:]
        if len(digits) < 4 or digits[0] == "0" or not (digits.isascii() and digits.isdigit()):
            return None
        codes = _CALLING_CODES or _calling_codes()
        for size in (1, 2, 3):
            if digits[:size] in codes:
                break
        else:
            return None
        meta = _phone_meta(int(digits[:size]), None)
        national = digits[size:]
        if meta is None or (meta[2] and national.startswith(meta[2])):
            return None
    else:
        if default_region is None or not (s.isascii() and s.isdigit()):
            return None
        meta = _phone_meta(None, default_region)
        if meta is None:
            return None
        if s.startswith(meta[6]):
            return None  # the library may read a leading country code without '+' here
        national = s
        prefix = meta[2]
        if prefix and national.startswith(prefix):
            national = national[len(prefix):]
            if not meta[3].fullmatch(national):
                return None
    if national[:1] == "0" or len(national) not in meta[4] or len(national) in meta[5]:
        return None
    return meta[7] + national


def make_phone(default_region: str | None) -> Converter:
    """A phone converter to E.164 with ``default_region`` for numbers without a country code."""

    @lru_cache(maxsize=65536)
    def _norm(text: str) -> str:
        return _fast_e164(text, default_region) or normalize_phone(text, default_region)

    def to_phone(value: Any) -> str:
        if isinstance(value, bool):
            raise ValueError(f"not a phone number: {value!r}")
        if isinstance(value, (int, float)):
            value = to_str(value)
        if not isinstance(value, str):
            raise ValueError(f"not a phone number: {value!r}")
        return _norm(value)

    return to_phone


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"not a boolean: {value!r}")


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (str, Decimal)):
        text = str(value).strip().replace("_", "")
        try:
            return int(text)
        except ValueError:
            try:
                number = Decimal(text)
            except InvalidOperation:
                raise ValueError(f"not an integer: {value!r}") from None
            if number == number.to_integral_value():
                return int(number)
    raise ValueError(f"not an integer: {value!r}")


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {value!r}") from None


def to_sentiment(value: Any) -> float:
    number = to_float(value)
    if not -1.0 <= number <= 1.0:
        raise ValueError(f"sentiment must be between -1 and 1, got {value!r}")
    return number


_AMOUNT_JUNK = re.compile(r"[\s\u00a0']")


def to_decimal_str(value: Any) -> str:
    """A money amount as a canonical decimal string (``"12.50"``); ``"1,234.50"`` and ``"12,50"`` accepted."""
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = _AMOUNT_JUNK.sub("", value)
        if "," in text and "." in text:
            text = text.replace(",", "")
        elif text.count(",") == 1 and "." not in text:
            text = text.replace(",", ".")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not an amount: {value!r}") from None
        if not number.is_finite():
            raise ValueError(f"not an amount: {value!r}")
        return str(number)
    raise ValueError(f"not an amount: {value!r}")


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    else:
        value = value.astimezone(UTC)
    return value.isoformat()


def parse_datetime(value: Any) -> datetime:
    """An aware UTC datetime from a datetime, date, ISO string or epoch number (seconds or milliseconds)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError(f"not a date-time: {value!r}")
    if isinstance(value, (int, float)):
        seconds = value / 1000 if abs(value) > 100_000_000_000 else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_datetime(int(text))
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        # Salesforce sends "+0000" offsets (no colon); fromisoformat handles them on 3.11+.
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not a date-time: {value!r}") from None
        return parse_datetime(parsed)
    raise ValueError(f"not a date-time: {value!r}")


def to_datetime(value: Any) -> str:
    """An ISO 8601 UTC string (the patch stays JSON-safe)."""
    return _iso(parse_datetime(value))


_DAY_FIRST = re.compile(r"^(\d{1,2})[./](\d{1,2})[./](\d{4})$")


def to_date(value: Any) -> str:
    """An ISO date string from a date, datetime, ``YYYY-MM-DD[...]`` or ``DD.MM.YYYY`` string."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        match = _DAY_FIRST.match(text)
        try:
            if match:
                day, month, year = (int(g) for g in match.groups())
                return date(year, month, day).isoformat()
            return date.fromisoformat(text[:10]).isoformat()
        except ValueError:
            raise ValueError(f"not a date: {value!r}") from None
    raise ValueError(f"not a date: {value!r}")


def to_currency(value: Any) -> str:
    code = to_str(value).upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ValueError(f"not an ISO 4217 currency code: {value!r}")
    return code


def _enum_converter(values: set[str], synonyms: dict[str, str]) -> Converter:
    def convert(value: Any) -> str:
        text = to_str(value).lower().replace(" ", "_").replace("-", "_")
        text = synonyms.get(text, text)
        if text not in values:
            raise _Unknown(text)
        return text

    return convert


class _Unknown(ValueError):
    """A value outside a closed vocabulary: mapped to ``other`` with the raw value kept (not an error)."""


to_channel = _enum_converter(
    {c.value for c in Channel},
    {"e_mail": "email", "mail": "email", "call": "phone", "telephone": "phone", "online": "web",
     "website": "web", "shop": "store", "pos": "store", "text": "sms", "survey_response": "survey"},
)
to_interaction_type = _enum_converter(
    {t.value for t in InteractionType},
    {"order": "purchase", "sale": "purchase", "return": "refund", "phone_call": "call", "case": "ticket",
     "survey": "survey_response", "comment": "note", "closed_won": "deal_won", "closed_lost": "deal_lost",
     "visit": "page_view", "pageview": "page_view"},
)
to_direction = _enum_converter(
    {d.value for d in Direction},
    {"in": "inbound", "incoming": "inbound", "out": "outbound", "outgoing": "outbound"},
)

UnknownValue = _Unknown
