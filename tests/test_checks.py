"""Each check kind against real servers on 127.0.0.x: what counts as up, and
the reason given when it is not."""

from __future__ import annotations

import asyncio
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import trustme

from geodns.config.checks import matcher
from geodns.config.model import Check
from geodns.health.checks import Target, make_probe
from geodns.health.checks.base import ProbeResult
from geodns.health.checks.reaper import REAPER
from geodns.health.probing import run_probe
from tests.backends import BannerServer, HostileServer, HttpBackend

HOST = "127.0.0.41"


def http_check(**kw: object) -> Check:
    return Check(name="t", type=str(kw.pop("type", "http")), **kw)  # type: ignore[arg-type]


async def probe(check: Check, target: Target, limit: float = 1.0) -> ProbeResult:
    p = make_probe(check)
    try:
        return await run_probe(p, target, limit)
    finally:
        await p.close()


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[HttpBackend]:
    b = await HttpBackend(HOST).start()
    try:
        yield b
    finally:
        await b.stop()


@pytest.mark.asyncio
async def test_http_up(backend: HttpBackend) -> None:
    result = await probe(http_check(expect_body=matcher("OK")), Target(HOST, backend.port))
    assert (result.ok, result.reason) == (True, "ok")


@pytest.mark.asyncio
async def test_http_status_mismatch(backend: HttpBackend) -> None:
    backend.behaviour.status = 503
    result = await probe(http_check(), Target(HOST, backend.port))
    assert not result.ok and result.kind == "status"
    assert result.reason == "HTTP 503 (expected 200-299)"
    result = await probe(http_check(expect_status=((200, 200), (301, 302))), Target(HOST, backend.port))
    assert result.reason == "HTTP 503 (expected 200, 301-302)"


@pytest.mark.asyncio
async def test_http_200_with_error_body_is_down(backend: HttpBackend) -> None:
    backend.behaviour.body = "ERROR: database unreachable"
    result = await probe(http_check(expect_body=matcher("OK")), Target(HOST, backend.port))
    assert not result.ok and result.kind == "body"
    assert result.reason == "HTTP 200 body did not match 'OK': 'ERROR: database unreachable'"
    # A regex anchors what a substring cannot: "NOT OK" contains "OK".
    backend.behaviour.body = "NOT OK"
    assert (await probe(http_check(expect_body=matcher("OK")), Target(HOST, backend.port))).ok
    result = await probe(http_check(expect_body=matcher("/^OK$/")), Target(HOST, backend.port))
    assert not result.ok and "did not match /^OK$/" in result.reason


@pytest.mark.asyncio
async def test_http_hang_is_a_timeout(backend: HttpBackend) -> None:
    backend.behaviour.hang = True
    result = await probe(http_check(), Target(HOST, backend.port), limit=0.3)
    assert (result.ok, result.kind, result.reason) == (False, "timeout", "no answer within 0.3s")


@pytest.mark.asyncio
async def test_http_connection_refused() -> None:
    result = await probe(http_check(), Target("127.0.0.42", 9))
    assert not result.ok and result.kind == "refused"
    assert result.reason.startswith("cannot connect to 127.0.0.42:9:")


@pytest.mark.asyncio
async def test_http_fresh_connection_per_probe_and_host_header(backend: HttpBackend) -> None:
    backend.behaviour.require_host = "www.example.com"
    check = http_check(host="www.example.com")
    p = make_probe(check)
    try:
        for _ in range(3):
            assert (await run_probe(p, Target(HOST, backend.port), 1.0)).ok
    finally:
        await p.close()
    assert backend.requests == 3
    assert len(backend.connections) == 3  # no keep-alive reuse
    assert backend.hosts_seen == ["www.example.com"] * 3
    result = await probe(http_check(), Target(HOST, backend.port))
    assert result.reason == "HTTP 421 (expected 200-299)"


@pytest.mark.asyncio
async def test_http_body_read_is_bounded(backend: HttpBackend) -> None:
    backend.behaviour.big_body = 50 * 1024 * 1024
    result = await probe(http_check(expect_body=matcher("/^OK/")), Target(HOST, backend.port), limit=5)
    assert result.ok  # matched in the first 64 KiB; the other 50 MB were never read


@pytest.mark.asyncio
async def test_https_self_signed(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("www.example.com", HOST)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    backend = await HttpBackend(HOST, ssl_context=server_ctx).start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    target = Target(HOST, backend.port)
    try:
        result = await probe(http_check(type="https"), target)
        assert not result.ok and result.kind == "tls"
        assert "certificate" in result.reason.lower()
        assert (await probe(http_check(type="https", tls_verify=False), target)).ok
        assert (await probe(http_check(type="https", ca_file=ca_file), target)).ok
        # SNI and Host name the site, the connection goes to the address.
        assert (await probe(http_check(type="https", ca_file=ca_file, host="www.example.com"), target)).ok
        result = await probe(http_check(type="https", ca_file=ca_file, host="other.example.com"), target)
        assert not result.ok and result.kind == "tls"
    finally:
        await backend.stop()


@pytest.mark.asyncio
async def test_tcp_connect_banner_and_send() -> None:
    server = await BannerServer("127.0.0.43", b"220 smtp.example ESMTP ready\r\n").start()
    target = Target("127.0.0.43", server.port)
    try:
        assert (await probe(Check(name="t", type="tcp", port=server.port), target)).ok
        ok = Check(name="t", type="tcp", port=server.port, expect=matcher("/^220 /"))
        assert (await probe(ok, target)).ok
        wrong = Check(name="t", type="tcp", port=server.port, expect=matcher("/^\\+OK/"))
        result = await probe(wrong, target, limit=0.5)
        assert not result.ok and result.kind in ("banner", "timeout")
        ping = Check(name="t", type="tcp", port=server.port, send="PING\r\n", expect=matcher("PONG"))
        assert (await probe(ping, target)).ok
    finally:
        await server.stop()
    result = await probe(Check(name="t", type="tcp", port=server.port), target)
    assert not result.ok and result.kind == "refused"


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.mark.asyncio
async def test_exec_up_down_and_environment(tmp_path: Path) -> None:
    ok = script(tmp_path, "ok.sh", 'test "$GEODNS_ADDRESS" = 127.0.0.44 && test "$GEODNS_PORT" = 8080\n')
    assert (await probe(Check(name="t", type="exec", command=(ok,)), Target("127.0.0.44", 8080))).ok
    bad = script(
        tmp_path, "bad.sh", 'echo "checking $GEODNS_ADDRESS"; echo "db: connection refused" >&2; exit 2\n'
    )
    result = await probe(Check(name="t", type="exec", command=(bad,)), Target("127.0.0.44", 8080))
    assert not result.ok and result.kind == "exec"
    assert result.reason == "exit 2: checking 127.0.0.44 db: connection refused"
    missing = await probe(Check(name="t", type="exec", command=("/nonexistent/check",)), Target("x", None))
    assert not missing.ok and "cannot run '/nonexistent/check'" in missing.reason


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a PID 1 that may never reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.asyncio
async def test_exec_hang_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hang = script(tmp_path, "hang.sh", f"sleep 300 & echo $! > {pidfile}\nwait\n")
    result = await probe(Check(name="t", type="exec", command=(hang,)), Target("127.0.0.44", None), limit=0.5)
    assert (result.ok, result.kind) == (False, "timeout")
    child = int(pidfile.read_text())
    for _ in range(50):  # the kill is immediate; give the kernel a moment
        if not alive(child):
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail(f"the script's child {child} survived the timeout")


class Exploding:
    async def probe(self, target: Target) -> ProbeResult:
        raise RuntimeError("boom")

    async def close(self) -> None:
        return None


@pytest.mark.asyncio
async def test_a_check_that_raises_is_a_failure_with_its_reason() -> None:
    result = await run_probe(Exploding(), Target("127.0.0.45", 1), 1.0)
    assert (result.ok, result.kind, result.reason) == (False, "error", "check raised RuntimeError: boom")


@pytest.mark.parametrize(
    ("raw", "eof", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK", False, (200, b"OK")),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nOK", False, None),  # more to come
        (b"HTTP/1.0 503 Busy\r\n\r\ndown for maintenance", True, (503, b"down for maintenance")),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n3;x=y\r\n!!!\r\n0\r\n\r\n",
            False,
            (200, b"OK!!!"),
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n", False, None),
        (b"HTTP/1.1 204 No Content\r\n\r\n", False, (204, b"")),
    ],
)
def test_http_response_parsing(raw: bytes, eof: bool, expected: tuple[int, bytes] | None) -> None:
    from geodns.health.checks.http import parse_response

    assert parse_response(raw, eof, head_only=False) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 O", "connection closed before the response headers ended"),
    ],
)
def test_http_response_errors(raw: bytes, message: str) -> None:
    from geodns.health.checks.http import HttpError, parse_response

    with pytest.raises(HttpError, match=message):
        parse_response(raw, True, head_only=False)


@pytest.mark.asyncio
async def test_http_against_something_that_is_not_http() -> None:
    server = await BannerServer("127.0.0.46", b"SSH-2.0-OpenSSH_9.2\r\n\r\n").start()
    try:
        result = await probe(http_check(), Target("127.0.0.46", server.port))
        assert not result.ok and result.kind == "protocol"
        assert result.reason == "bad HTTP response: not an HTTP/1.x status line: 'SSH-2.0-OpenSSH_9.2'"
    finally:
        await server.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("mode", "kind", "reason"),
    [
        ("endless-chunk", "protocol", "bad HTTP response: no complete response within 256 KiB"),
        ("endless-headers", "protocol", "bad HTTP response: response headers longer than 16 KiB"),
        ("trickle", "timeout", "no answer within 1s"),
    ],
)
async def test_hostile_backends_fail_fast_and_cost_a_bounded_read(mode: str, kind: str, reason: str) -> None:
    server = await HostileServer("127.0.0.47", mode, pace=0.2, seconds=5).start()
    try:
        result = await probe(http_check(), Target("127.0.0.47", server.port), limit=1.0)
        assert (result.ok, result.kind, result.reason) == (False, kind, reason)
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_a_huge_body_is_read_only_up_to_its_bound() -> None:
    server = await HostileServer("127.0.0.47", "huge", seconds=5).start()
    try:
        result = await probe(http_check(expect_body=matcher("OK")), Target("127.0.0.47", server.port))
        assert (result.ok, result.reason) == (True, "ok")  # the body starts with OK; the rest is never read
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_interim_1xx_responses_are_skipped() -> None:
    """A backend that sends 103 Early Hints (or 100 Continue) before its 200 is up:
    the interim status is not the answer."""
    server = await HostileServer("127.0.0.47", "interim").start()
    try:
        result = await probe(http_check(expect_body=matcher("OK")), Target("127.0.0.47", server.port))
        assert (result.ok, result.reason) == (True, "ok")
    finally:
        await server.stop()


def test_the_reader_looks_at_each_byte_once_and_stops_at_its_bounds() -> None:
    """10 MB of an endless chunk extension, fed in 8 KiB segments: the reader gives
    up after MAX_WIRE bytes (the old parser rescanned its whole, ever-growing
    buffer on every segment: quadratic CPU and memory without bound)."""
    from geodns.health.checks.http import MAX_WIRE, HttpError, ResponseReader

    reader = ResponseReader(head_only=False)
    reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;")
    fed = 0
    with pytest.raises(HttpError, match="no complete response within 256 KiB"):
        for _ in range(1280):
            reader.feed(b"a" * 8192)
            fed += 8192
    assert fed <= MAX_WIRE
    # A 100 MB body: complete once 64 KiB of it are in, whatever follows.
    reader = ResponseReader(head_only=False)
    assert not reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
    chunks = 0
    while not reader.feed(b"x" * 8192):
        chunks += 1
    assert chunks < 10 and len(reader.body) == 64 * 1024


async def _gone(pid: int, within: float = 2.0) -> bool:
    for _ in range(int(within / 0.02)):
        if not alive(pid):
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.asyncio
async def test_exec_is_done_when_the_command_exits_not_when_its_output_ends(tmp_path: Path) -> None:
    """A script that starts a background child holding stdout, then exits 0: up at
    once (waiting for EOF made it a timeout), and the child left behind is killed."""
    REAPER.enable_subreaper()
    pidfile = tmp_path / "bg.pid"
    leaves = script(tmp_path, "leaves.sh", f"sleep 30 & echo $! > {pidfile}\necho fine\nexit 0\n")
    result = await probe(
        Check(name="t", type="exec", command=(leaves,)), Target("127.0.0.44", None), limit=2.0
    )
    assert (result.ok, result.reason) == (True, "ok")
    assert await _gone(int(pidfile.read_text())), "the background child survived its check"


@pytest.mark.asyncio
async def test_exec_descendants_that_setsid_away_are_killed(tmp_path: Path) -> None:
    REAPER.enable_subreaper()
    pidfile = tmp_path / "escaped.pid"
    escapes = script(tmp_path, "escapes.sh", f"setsid sleep 30 & echo $! > {pidfile}\nsleep 30\n")
    result = await probe(
        Check(name="t", type="exec", command=(escapes,)), Target("127.0.0.44", None), limit=0.5
    )
    assert (result.ok, result.kind) == (False, "timeout")
    escaped = int(pidfile.read_text())
    assert _session_of(escaped) == escaped or not alive(escaped)  # it really left the check's session
    assert await _gone(escaped), "a descendant that called setsid() escaped the timeout"


@pytest.mark.asyncio
async def test_exec_output_is_read_within_a_bound(tmp_path: Path) -> None:
    noisy = script(tmp_path, "noisy.sh", "yes 'all work and no play'\n")
    result = await probe(
        Check(name="t", type="exec", command=(noisy,)), Target("127.0.0.44", None), limit=5.0
    )
    assert not result.ok and result.reason.startswith("wrote more than 1024 KiB of output: ")
    assert result.reason.endswith("all work and no play")


def _session_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError):
        return None
