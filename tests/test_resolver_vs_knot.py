"""A real resolver (unbound) using geodns as its stub gets the same answers as
when it uses Knot serving the same zones.

Everything runs inside a network namespace this test creates, holding only a
loopback interface: a resolver chasing a name outside our zones has nowhere to
send it, so no packet can leave the machine whatever unbound decides to do.
Skipped unless root with iproute2, knotd and unbound (CI installs them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from geodns.config import load
from geodns.dns.zonetext import zone_text
from geodns.steering.policy import AllMembers
from geodns.zone.names import to_text
from tests.conftest import DATA, REPO, needs

pytestmark = needs("ip", "knotd", "unbound", root=True)  # apt-get install iproute2 knot unbound

GEODNS_PORT, KNOT_PORT, UNBOUND_GEODNS_PORT, UNBOUND_KNOT_PORT = 5301, 5302, 5303, 5304

QUESTIONS = [
    ("mail.example.test.", "A"),
    ("MAIL.Example.TEST.", "A"),
    ("www.example.test.", "A"),
    ("www.example.test.", "AAAA"),
    ("alias2.example.test.", "A"),
    ("nope.example.test.", "A"),
    ("b.c.example.test.", "A"),
    ("a.b.c.example.test.", "A"),
    ("anything.wild.example.test.", "A"),
    ("x.y.wild.example.test.", "A"),
    ("exists.wild.example.test.", "A"),
    ("q.wildcname.example.test.", "A"),
    ("example.test.", "MX"),
    ("example.test.", "NS"),
    ("example.test.", "SOA"),
    ("example.test.", "TXT"),
    ("_sip._udp.example.test.", "SRV"),
    ("caa.example.test.", "CAA"),
    ("longtxt.example.test.", "TXT"),
    ("big.example.test.", "TXT"),
    ("to-other-zone.example.test.", "A"),
    ("dangling.example.test.", "A"),
    ("loop1.example.test.", "A"),
    ("mail.example.test.", "AAAA"),
    ("host.other.test.", "A"),
    ("nothing.other.test.", "TXT"),
    ("53.2.0.192.in-addr.arpa.", "PTR"),
    ("54.2.0.192.in-addr.arpa.", "PTR"),
]

CLIENT = """
import json, sys
import dns.flags, dns.message, dns.query, dns.rcode
port = int(sys.argv[1])
out = []
for name, rdtype in json.loads(sys.argv[2]):
    q = dns.message.make_query(name, rdtype)
    r = dns.query.udp(q, "127.0.0.1", port=port, timeout=5)
    if r.flags & dns.flags.TC:
        r = dns.query.tcp(q, "127.0.0.1", port=port, timeout=5)
    answer = sorted(f"{rrset.name.to_text().lower()} {rrset.rdtype} {rd.to_text()}"
                    for rrset in r.answer for rd in rrset)
    out.append([name, rdtype, dns.rcode.to_text(r.rcode()), answer])
print(json.dumps(out))
"""


def unbound_conf(tmp: Path, port: int, upstream: int) -> Path:
    stubs = "".join(
        f'stub-zone:\n    name: "{zone}"\n    stub-addr: 127.0.0.1@{upstream}\n'
        for zone in (".", "example.test.", "other.test.", "2.0.192.in-addr.arpa.")
    )
    conf = tmp / f"unbound-{port}.conf"
    conf.write_text(f"""server:
    interface: 127.0.0.1@{port}
    port: {port}
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{tmp}"
    pidfile: "{tmp}/unbound-{port}.pid"
    use-syslog: no
    logfile: ""
    module-config: "iterator"
    qname-minimisation: no
    prefetch: no
    num-threads: 1
    # unbound answers these special-use names itself (RFC 6761) unless told not to.
    local-zone: "test." nodefault
    local-zone: "2.0.192.in-addr.arpa." nodefault
remote-control:
    control-enable: no
{stubs}""")
    return conf


def knot_conf(tmp: Path, zones: dict[str, Path]) -> Path:
    entries = "".join(f"  - domain: {origin}\n    file: {path}\n" for origin, path in zones.items())
    conf = tmp / "knot.conf"
    conf.write_text(f"""server:
    listen: 127.0.0.1@{KNOT_PORT}
    rundir: {tmp}
database:
    storage: {tmp}/knotdb
zone:
{entries}""")
    return conf


class Namespace:
    def __init__(self) -> None:
        self.name = f"geodns-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, *cmd: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], stdout=out, stderr=out)
        self.procs.append(proc)
        return proc

    def run(self, *cmd: str) -> str:
        result = subprocess.run(
            ["ip", "netns", "exec", self.name, *cmd], check=True, capture_output=True, text=True, timeout=120
        )
        return result.stdout

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def netns() -> Iterator[Namespace]:
    ns = Namespace()
    try:
        yield ns
    finally:
        ns.close()


def wait_until_answering(ns: Namespace, port: int) -> None:
    probe = (
        "import dns.message, dns.query, sys; "
        "dns.query.udp(dns.message.make_query('example.test.', 'SOA'), '127.0.0.1', "
        "port=int(sys.argv[1]), timeout=0.5)"
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            ns.run(sys.executable, "-c", probe, str(port))
            return
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_unbound_gets_the_same_answers_from_geodns_and_knot(netns: Namespace, tmp_path: Path) -> None:
    config = load(DATA / "geodns.yaml")
    zone_files = {}
    for origin, zone in config.zones.zones.items():
        path = tmp_path / f"{to_text(origin)}zone"
        path.write_text(zone_text(zone, AllMembers(config.pools)))
        zone_files[to_text(origin)] = path
    env_py = f"PYTHONPATH={REPO}"
    netns.spawn(
        "env",
        env_py,
        sys.executable,
        "-m",
        "geodns",
        "serve",
        "-c",
        str(DATA / "geodns.yaml"),
        "--dns-listen",
        f"127.0.0.1:{GEODNS_PORT}",
        "--http-listen",
        "127.0.0.1:0",
        log=tmp_path / "geodns.log",
    )
    netns.spawn("knotd", "-c", str(knot_conf(tmp_path, zone_files)), log=tmp_path / "knot.log")
    wait_until_answering(netns, GEODNS_PORT)
    wait_until_answering(netns, KNOT_PORT)
    netns.spawn(
        "unbound",
        "-d",
        "-c",
        str(unbound_conf(tmp_path, UNBOUND_GEODNS_PORT, GEODNS_PORT)),
        log=tmp_path / "unbound-geodns.log",
    )
    netns.spawn(
        "unbound",
        "-d",
        "-c",
        str(unbound_conf(tmp_path, UNBOUND_KNOT_PORT, KNOT_PORT)),
        log=tmp_path / "unbound-knot.log",
    )
    wait_until_answering(netns, UNBOUND_GEODNS_PORT)
    wait_until_answering(netns, UNBOUND_KNOT_PORT)

    questions = json.dumps(QUESTIONS)
    via_geodns = json.loads(netns.run(sys.executable, "-c", CLIENT, str(UNBOUND_GEODNS_PORT), questions))
    via_knot = json.loads(netns.run(sys.executable, "-c", CLIENT, str(UNBOUND_KNOT_PORT), questions))
    assert len(via_geodns) == len(QUESTIONS)
    for ours, theirs in zip(via_geodns, via_knot, strict=True):
        assert ours == theirs
    # Sanity: the comparison saw real data, not two identical failures.
    by_question = {(q[0], q[1]): q for q in via_geodns}
    assert by_question[("mail.example.test.", "A")][2:] == ["NOERROR", ["mail.example.test. 1 192.0.2.25"]]
    assert by_question[("nope.example.test.", "A")][2] == "NXDOMAIN"
    assert len(by_question[("big.example.test.", "TXT")][3]) == 6  # over TCP after TC
