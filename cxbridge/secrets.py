"""Secrets: the process-wide registry of secret values and the redaction every log line and error goes through.

Every secret the configuration resolves (``{ env = "VAR" }``, ``{ file = "path" }``, any ``SecretStr`` value)
is registered in :data:`registry`. :func:`redact` then removes, from any text:

- every registered secret value (also in its URL-encoded forms, as it appears in query strings);
- the values of secret-looking keys (``token``, ``password``, ``secret``, ``authorization``, ``api_key``,
  ``client_secret``, ``refresh_token``, ``access_token``, ``private_key``, ...) in query strings
  (``?hapikey=...``), JSON and Python reprs (``"access_token": "..."``) and header lines
  (``Authorization: Bearer ...``), bearer credentials anywhere and passwords in URLs
  (``postgresql://user:***@host/db``).

Adapters build error messages from vendor answers with ``redact(body)`` so a token echoed by a CRM never reaches
a log or the terminal. :mod:`cxbridge.logs` applies :func:`redact` to every log record.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SECRET_KEY_WORDS",
    "SecretRegistry",
    "is_secret_key",
    "redact",
    "registry",
]

#: What a redacted value is replaced with.
MASK = "***"

#: Shorter values are not registered: redacting every "1" or "ab" in every log line would destroy the logs
#: while protecting nothing (a 3-character secret is not a secret).
MIN_SECRET_LENGTH = 4

#: Key name fragments that mark a value as secret (matched case-insensitively inside the key name).
SECRET_KEY_WORDS = (
    "token",
    "password",
    "passwd",
    "secret",
    "authorization",
    "api_key",
    "api-key",
    "apikey",
    "private_key",
    "private-key",
    "session_id",
    "sessionid",
    "cookie",
    "signature",
)

_KEY = r"[A-Za-z0-9_.\-]*(?:" + "|".join(re.escape(w) for w in SECRET_KEY_WORDS) + r")[A-Za-z0-9_.\-]*"

# "key": "value" / 'key': 'value' / "key"="value" (JSON, Python reprs, form dumps).
_QUOTED = re.compile(
    r"""(?P<q>["'])(?P<k>""" + _KEY + r""")(?P=q)(?P<sep>\s*(?::|=>?)\s*)"""
    r"""(?P<vq>["'])(?:\\.|(?!(?P=vq)).)*(?P=vq)""",
    re.IGNORECASE,
)
# key=value (query strings, form bodies, free text).
_ASSIGN = re.compile(r"(?P<k>(?<![A-Za-z0-9_.\-])" + _KEY + r")=(?P<v>[^&\s#;,'\"]+)", re.IGNORECASE)
# key: value (header lines, "Authorization: Bearer abc", YAML-ish text).
_HEADER = re.compile(
    r"(?P<k>(?<![A-Za-z0-9_.\-\"'])" + _KEY + r")(?P<sep>\s*:\s*)"
    r"(?P<v>(?:bearer|basic|token|digest|oauth)\s+[^\s,;'\"]+|[^\s,;'\"{}\[\]*][^\s,;'\"]*)",
    re.IGNORECASE,
)
# Passwords in URLs: scheme://user:password@host.
_USERINFO = re.compile(r"(?P<p>\b[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)(?P<v>[^@\s/]+)(?=@)")
# Bearer credentials wherever they appear.
_BEARER = re.compile(r"(?P<k>\b(?:bearer|basic))\s+(?P<v>[A-Za-z0-9._~+/=\-]{4,})", re.IGNORECASE)


def is_secret_key(name: str) -> bool:
    """Whether a key name looks like it holds a secret (``api_key``, ``X-Refresh-Token``, ``password``)."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_KEY_WORDS)


class SecretRegistry:
    """A thread-safe set of secret values known to this process.

    Values are only ever added (a secret rotated away is still a secret worth hiding in old log lines).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: object) -> None:
        """Register one secret value (``SecretStr`` and bytes accepted; short or empty values are ignored)."""
        text = _plain(value)
        if text is None or len(text) < MIN_SECRET_LENGTH:
            return
        forms = {text, quote(text, safe=""), quote_plus(text)}
        forms = {f for f in forms if len(f) >= MIN_SECRET_LENGTH}
        with self._lock:
            if forms <= self._values:
                return
            self._values |= forms
            self._pattern = None

    def update(self, values: Iterable[object]) -> None:
        """Register several secret values."""
        for value in values:
            self.add(value)

    def clear(self) -> None:
        """Forget every value (tests only)."""
        with self._lock:
            self._values.clear()
            self._pattern = None

    def __contains__(self, value: object) -> bool:
        text = _plain(value)
        with self._lock:
            return text is not None and text in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def pattern(self) -> re.Pattern[str] | None:
        """A compiled alternation of every known value, longest first (so a secret containing another wins)."""
        with self._lock:
            if self._pattern is None and self._values:
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
            return self._pattern


#: The process-wide registry the config loader fills and :func:`redact` reads.
registry = SecretRegistry()


def _plain(value: object) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    if callable(getter):
        value = getter()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        value = str(value)
    return value


def redact(text: object, extra: Iterable[object] = ()) -> str:
    """Return ``text`` with every known secret and every secret-looking key's value replaced by ``***``.

    :param text: anything; non-strings are converted with ``str``.
    :param extra: more secret values to remove for this call only (e.g. an adapter's own credentials).
    """
    out = text if isinstance(text, str) else str(text)
    if not out:
        return out
    extra_values = [p for p in (_plain(v) for v in extra) if p and len(p) >= MIN_SECRET_LENGTH]
    if extra_values:
        forms = {f for v in extra_values for f in (v, quote(v, safe=""), quote_plus(v))}
        pattern = re.compile("|".join(re.escape(v) for v in sorted(forms, key=len, reverse=True)))
        out = pattern.sub(MASK, out)
    known = registry.pattern()
    if known is not None:
        out = known.sub(MASK, out)
    # Cheap substring tests first: most log lines name no secret-looking key, and the regexes below are the
    # expensive part of redaction.
    lowered = out.lower()
    if any(word in lowered for word in SECRET_KEY_WORDS):
        out = _QUOTED.sub(lambda m: f"{m['q']}{m['k']}{m['q']}{m['sep']}{m['vq']}{MASK}{m['vq']}", out)
        out = _ASSIGN.sub(lambda m: f"{m['k']}={MASK}", out)
        out = _HEADER.sub(_header_sub, out)
    if "bearer" in lowered or "basic" in lowered:
        out = _BEARER.sub(lambda m: f"{m['k']} {MASK}", out)
    if "@" in out and "://" in out:
        out = _USERINFO.sub(lambda m: f"{m['p']}{MASK}", out)
    return out


def _header_sub(match: re.Match[str]) -> str:
    value = match["v"]
    if value == MASK or value.startswith(MASK):
        return match.group(0)
    return f"{match['k']}{match['sep']}{MASK}"
