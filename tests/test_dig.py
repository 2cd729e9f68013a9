"""`dig` (BIND's client) against the shipped example config, for each case a
resolver relies on. Skipped where dig is not installed (CI installs it)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from geodns.config import load
from geodns.config.model import ListenAddress
from tests.conftest import REPO, Running, needs, start_daemon

pytestmark = needs("dig")  # apt-get install bind9-dnsutils


@dataclasses.dataclass
class Dig:
    status: str
    flags: set[str]
    answer: list[str]
    authority: list[str]
    additional: list[str]
    raw: str


async def dig(server: Running, *args: str, v6: bool = False) -> Dig:
    where = server.v6 if v6 else server.v4
    proc = await asyncio.create_subprocess_exec(
        "dig",
        f"@{where.host}",
        "-p",
        str(where.port),
        "+time=3",
        "+tries=1",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    text = out.decode()
    header = re.search(r"status: (\w+)", text)
    flags = re.search(r";; flags: ([a-z ]+);", text)
    sections: dict[str, list[str]] = {"ANSWER": [], "AUTHORITY": [], "ADDITIONAL": []}
    current = None
    for line in text.splitlines():
        m = re.match(r";; (\w+) SECTION:", line)
        if m:
            current = m.group(1)
            continue
        if not line.strip() or line.startswith(";"):
            current = None if not line.strip() else current
            continue
        if current in sections:
            sections[current].append(" ".join(line.split()))
    return Dig(
        status=header.group(1) if header else "NONE",
        flags=set(flags.group(1).split()) if flags else set(),
        answer=sections["ANSWER"],
        authority=sections["AUTHORITY"],
        additional=sections["ADDITIONAL"],
        raw=text,
    )


@pytest_asyncio.fixture
async def example(tmp_path: Path) -> AsyncIterator[Running]:
    config = load(REPO / "config" / "geodns.yaml")
    server = dataclasses.replace(
        config.server,
        state_dir=tmp_path,  # keep the example's health state out of the checkout
        dns_listen=(ListenAddress("127.0.0.1", 0), ListenAddress("::1", 0)),
        http_listen=ListenAddress("127.0.0.1", 0),
    )
    running = await start_daemon(dataclasses.replace(config, server=server))
    try:
        yield running
    finally:
        await running.daemon.stop()


@pytest.mark.asyncio
async def test_dig_positive_answers(example: Running) -> None:
    r = await dig(example, "www.example.com", "A")
    assert r.status == "NOERROR" and "aa" in r.flags and "ra" not in r.flags
    assert sorted(r.answer) == [f"www.example.com. 30 IN A 127.0.0.{n}" for n in (11, 12, 21, 31)]
    r = await dig(example, "www.example.com", "AAAA", "+tcp", v6=True)
    assert r.answer == ["www.example.com. 30 IN AAAA ::1"]
    r = await dig(example, "api.example.com", "A")
    assert r.answer[0] == "api.example.com. 3600 IN CNAME www.example.com."
    assert len(r.answer) == 5
    r = await dig(example, "example.com", "MX")
    assert r.answer == ["example.com. 3600 IN MX 10 mail.example.com."]
    assert r.additional == ["mail.example.com. 3600 IN A 192.0.2.25"]
    r = await dig(example, "x.apps.example.com", "A")
    assert r.answer == ["x.apps.example.com. 3600 IN A 192.0.2.80"]
    r = await dig(example, "25.2.0.192.in-addr.arpa", "PTR")
    assert r.answer == ["25.2.0.192.in-addr.arpa. 3600 IN PTR mail.example.com."]


@pytest.mark.asyncio
async def test_dig_negative_and_refused(example: Running) -> None:
    r = await dig(example, "missing.example.com", "A")
    assert r.status == "NXDOMAIN" and "aa" in r.flags
    assert r.authority == [
        "example.com. 60 IN SOA ns1.example.com. hostmaster.example.com. "
        + r.authority[0].split()[-5]
        + " 7200 3600 1209600 60"
    ]
    r = await dig(example, "path.example.com", "A")  # empty non-terminal above deep.ent.path
    assert (r.status, r.answer) == ("NOERROR", [])
    r = await dig(example, "www.example.org", "A")
    assert r.status == "REFUSED" and "aa" not in r.flags
    r = await dig(example, "example.com", "AXFR")
    assert "Transfer failed" in r.raw


@pytest.mark.asyncio
async def test_dig_referral_edns_nsid_and_truncation(example: Running) -> None:
    r = await dig(example, "host.lab.example.com", "A", "+norecurse")
    assert r.status == "NOERROR" and "aa" not in r.flags and r.answer == []
    assert sorted(r.authority) == [
        "lab.example.com. 3600 IN NS ns.other.example.net.",
        "lab.example.com. 3600 IN NS ns1.lab.example.com.",
    ]
    assert "ns1.lab.example.com. 3600 IN A 192.0.2.99" in r.additional
    r = await dig(example, "example.com", "SOA", "+nsid")
    assert 'NSID: 67 65 6f 64 6e 73 2d 70 61 72 2d 31 ("geodns-par-1")' in r.raw
    assert "udp: 1232" in r.raw
    r = await dig(example, "example.com", "SOA", "+edns=1", "+noednsnegotiation")
    assert r.status == "BADVERS"
    r = await dig(example, "example.com", "ANY")
    assert len(r.answer) == 1
