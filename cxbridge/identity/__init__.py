"""Identity resolution v1: deterministic match keys, decisions through ``resolve_identity``, golden records.

- :mod:`cxbridge.identity.keys` -- match keys (``email:``, ``phone:``, ``xid:``);
- :mod:`cxbridge.identity.default` -- the built-in decision (a ``trylast`` plugin);
- :mod:`cxbridge.identity.resolver` -- applies decisions to the store in batches (links, keys, merges,
  aliases, golden record recomputation).
"""

from __future__ import annotations

from .keys import KeyBuilder

__all__ = ["KeyBuilder"]
