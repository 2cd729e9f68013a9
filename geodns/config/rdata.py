"""Record values as written in zone YAML -> typed record data (pure).

MX, SRV and CAA are written as in a zone file ("10 mail.example.com.").
Target names follow zone-file rules: relative unless they end with a dot.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any

from geodns.config.fields import Invalid, type_name
from geodns.zone.names import Name, NameSyntaxError, parse_name, to_text
from geodns.zone.zone import CAA, MX, SRV, TXT, Address, RData, RType, Target, new_address

TXT_CHUNK = 255
SUPPORTED = ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "SRV", "CAA", "PTR")
_CAA_TAG = re.compile(r"^[A-Za-z0-9]+$")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}", re.ASCII)


def target_name(text: Any, origin: Name) -> Name:
    if not isinstance(text, str):
        raise Invalid(f"expected a domain name, got {type_name(text)}")
    try:
        name = parse_name(text, origin)
    except NameSyntaxError as exc:
        raise Invalid(str(exc)) from None
    if not text.endswith(".") and origin and ("." + text.lower()).endswith(_suffix(origin)):
        # The classic zone-file slip: "mail.example.com" in example.com. means
        # mail.example.com.example.com. Nobody wants that; make them say which.
        raise Invalid(
            f"{text!r} is relative and would mean {to_text(name)}; write {text + '.'!r} for the absolute name"
        )
    return name


@functools.lru_cache(maxsize=64)
def _suffix(origin: Name) -> str:
    """ ".example.com": a relative name ending so repeats its zone (made once per zone)."""
    return "." + to_text(origin).rstrip(".").lower()


def _u16(text: str, what: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise Invalid(f"{what} must be an integer 0..65535, got {text!r}")
    return int(text)


def _split_txt(value: str) -> list[bytes]:
    data = value.encode("utf-8")
    if not data:
        return [b""]
    return [data[i : i + TXT_CHUNK] for i in range(0, len(data), TXT_CHUNK)]


def parse_rdata(rtype: str, value: Any, origin: Name) -> RData:
    """One value of a record of type `rtype` (already validated as supported)."""
    if rtype == "TXT":
        if isinstance(value, str):
            return TXT(tuple(_split_txt(value)))
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            # A list is one TXT record made of several character-strings.
            return TXT(tuple(chunk for v in value for chunk in _split_txt(v)))
        raise Invalid(f"TXT value must be a string or a list of strings, got {type_name(value)}")
    if rtype == "A" and isinstance(value, str) and _IPV4.fullmatch(value):
        # As strict as ipaddress (no leading zeros), 4x cheaper, and then already its
        # canonical text. Copied, not kept from the file's: a zone's lasting strings
        # would pin the memory of everything parsed beside them (150 MB of 200,000 records).
        return new_address(value.encode("ascii").decode("ascii"))
    if rtype in ("A", "AAAA"):
        if not isinstance(value, str):
            raise Invalid(f"expected an IP address, got {type_name(value)}")
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            raise Invalid(f"{value!r} is not an IP address") from None
        want = 4 if rtype == "A" else 6
        if addr.version != want:
            raise Invalid(f"{value!r} is not an IPv{want} address (use type {'AAAA' if want == 4 else 'A'})")
        return Address(addr.compressed)
    if rtype in ("CNAME", "NS", "PTR"):
        return Target(target_name(value, origin))
    if not isinstance(value, str):
        raise Invalid(f"{rtype} value must be a string like a zone file's, got {type_name(value)}")
    parts = value.split()
    if rtype == "MX":
        if len(parts) != 2:
            raise Invalid(f"MX value must be 'PREFERENCE EXCHANGE', got {value!r}")
        return MX(_u16(parts[0], "MX preference"), target_name(parts[1], origin))
    if rtype == "SRV":
        if len(parts) != 4:
            raise Invalid(f"SRV value must be 'PRIORITY WEIGHT PORT TARGET', got {value!r}")
        return SRV(
            _u16(parts[0], "SRV priority"),
            _u16(parts[1], "SRV weight"),
            _u16(parts[2], "SRV port"),
            target_name(parts[3], origin),
        )
    if rtype == "CAA":
        match = re.fullmatch(r'\s*(\d+)\s+(\S+)\s+(?:"([^"]*)"|(\S+))\s*', value)
        if match is None:
            raise Invalid(f"CAA value must be 'FLAGS TAG \"VALUE\"', got {value!r}")
        flags = int(match.group(1))
        if flags > 255:
            raise Invalid(f"CAA flags must be 0..255, got {flags}")
        tag = match.group(2)
        if not _CAA_TAG.match(tag) or len(tag) > 15:
            raise Invalid(f"CAA tag must be 1-15 letters or digits, got {tag!r}")
        return CAA(flags, tag, match.group(3) if match.group(3) is not None else match.group(4))
    raise Invalid(f"unsupported record type {rtype!r}")


_NUMBERS = {t.name: int(t) for t in RType}


def rtype_number(name: str) -> int:
    return _NUMBERS[name]
