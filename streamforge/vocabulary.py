"""The values some event fields may take, one list each, and the characters no field may hold.

Read by validation (schemas/rules.py: an event with another value is invalid, so it is
rejected by the ingest function and dead-lettered by the pipelines with the field and the
reason), by the simulator (which draws from these lists) and by the docs.

The lists live here, not in the .avsc files, on purpose: a published schema version is
immutable, while a shop opens a region or a category now and then. Adding a value is a code
change and a deployment, not a new schema version; events refused before it stay in the
dead letters with their payload and can be replayed.
"""

from __future__ import annotations

import re
import unicodedata

from streamforge.geo import REGIONS

__all__ = ["CATEGORIES", "CURRENCIES", "HIDDEN_CHARACTERS", "REGION_CODES", "hidden_character"]

#: Shop regions (geo_region, shipping_region): streamforge/geo.py places and measures them.
REGION_CODES: frozenset[str] = frozenset(REGIONS)

#: The shop's product categories (clickstream and order ``category``); the simulator's catalog
#: prices each of them (streamforge/simulator/catalog.py; a test holds the two equal).
CATEGORIES: tuple[str, ...] = (
    "electronics",
    "computers",
    "home_kitchen",
    "fashion",
    "beauty",
    "sports_outdoors",
    "toys_games",
    "books",
    "grocery",
    "jewelry",
)

#: ISO 4217 active currency codes (``currency``).
CURRENCIES: frozenset[str] = frozenset(
    """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP
GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP
LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT
TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
""".split()
)

#: Characters that are invisible or change how text around them reads: C0 and C1 controls
#: (NUL, escape, ...), DEL, bidi overrides, embeddings and isolates (U+202E turns "us-east"
#: around on screen), zero-width and line/paragraph separators, the byte-order mark.
#: One pattern for Python's re and Java's regex (the Spark batch): escapes, not the characters.
HIDDEN_CHARACTERS = r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
_HIDDEN = re.compile(HIDDEN_CHARACTERS)


def hidden_character(text: str) -> str | None:
    """``U+202E RIGHT-TO-LEFT OVERRIDE`` for the first such character in ``text``, else None."""
    if text.isascii():
        if text.isprintable():  # ASCII printable: no control, and nothing else could be hidden
            return None
    found = _HIDDEN.search(text)
    if found is None:
        return None
    char = found.group()
    name = unicodedata.name(char, "") or {"\x00": "NUL"}.get(char, "(a control character)")
    return f"U+{ord(char):04X} {name}"
