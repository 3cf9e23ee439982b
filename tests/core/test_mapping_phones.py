"""The phone fast path gives exactly the library's answer (or defers to it) for many formats and regions."""

from __future__ import annotations

import random

import pytest

from cxbridge.models import normalize_phone
from cxbridge.sync.convert import _fast_e164, make_phone

REGIONS = ["DE", "US", "GB", "FR", "IT", "AT", "CH", "NL", "AR", "BR", "MX", "JP", "IN", "ES"]
CODES = {"DE": 49, "US": 1, "GB": 44, "FR": 33, "IT": 39, "AT": 43, "CH": 41, "NL": 31, "AR": 54, "BR": 55,
         "MX": 52, "JP": 81, "IN": 91, "ES": 34}


def _samples(rnd: random.Random, region: str) -> list[str]:
    cc = CODES[region]
    out = []
    for _ in range(400):
        n = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(3, 13)))
        lead = rnd.choice(["", "0", "1", "00", "9", "15"])
        out += [lead + n, f"+{cc} {n}", f"00{cc}{n}", f"+{cc} ({lead}{n[:3]}) {n[3:]}", f"({n[:3]}) {n[3:]}-1",
                f"+{rnd.randint(1, 999)}{n}", f"{lead}{n[:2]}/{n[2:]}", f"+{cc}-{n} x12", f"{n}.{n[:2]}"]
    return out


@pytest.mark.parametrize("region", REGIONS)
def test_fast_path_equals_library(region: str) -> None:
    rnd = random.Random(region)
    fast_hits = 0
    for text in _samples(rnd, region):
        fast = _fast_e164(text, region)
        try:
            expected = normalize_phone(text, region)
        except ValueError:
            expected = None
        if fast is not None:
            fast_hits += 1
            assert fast == expected, text
    assert fast_hits > 50  # the fast path is actually used


def test_converter_handles_everything_the_library_does() -> None:
    to_phone = make_phone("DE")
    assert to_phone("030 1234567") == "+49301234567"
    assert to_phone("+1 (212) 555-0100") == "+12125550100"
    assert to_phone("0049 30 1234567 ") == "+49301234567"
    assert to_phone(301234567) == "+49301234567"
    with pytest.raises(ValueError):
        to_phone("call me")
