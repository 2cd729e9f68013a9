"""The answer loop's UDP I/O, both kinds: recvmmsg/sendmmsg through the C
extension and socket calls, on real loopback sockets. Both must hand the loop
the same batches and deliver every reply to the client that asked."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from geodns.dns import native, udpio
from geodns.dns.udpio import UdpIO, udp_io

BUILT = native.UNAVAILABLE is None
KINDS = [
    pytest.param(
        True,
        id="recvmmsg",
        marks=pytest.mark.skipif(
            not BUILT and os.environ.get("GEODNS_REQUIRE_TOOLS") != "1",
            reason=f"C extension not built: {native.UNAVAILABLE}",
        ),
    ),
    pytest.param(False, id="socket"),
]
HOSTS = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}


def test_the_extension_is_built_where_the_install_had_a_compiler() -> None:
    """CI installs with gcc: a silent fallback there would hide a broken build."""
    if os.environ.get("GEODNS_REQUIRE_TOOLS") != "1" and not BUILT:
        pytest.skip(f"C extension not built: {native.UNAVAILABLE}")
    assert BUILT, native.UNAVAILABLE
    assert native.enabled


@pytest.fixture(params=[socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    """A server socket (non-blocking, as the daemon's) and two clients."""
    family = request.param
    made = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(3)]
    server, one, two = made
    try:
        for sock in made:
            sock.bind((HOSTS[family], 0))
        server.setblocking(False)
        one.settimeout(2)
        two.settimeout(2)
        yield server, one, two
    finally:
        for sock in made:
            sock.close()


def _wait_queued(io: UdpIO, count: int, limit: int = 64) -> udpio.Batch:
    """Datagrams sent on loopback are queued at once; collect `count` of them."""
    got: udpio.Batch = []
    for _ in range(1000):
        got += io.recv(limit)
        if len(got) >= count:
            break
    return got


@pytest.mark.parametrize("batched", KINDS)
def test_empty_socket_gives_an_empty_batch(pair: tuple[socket.socket, ...], batched: bool) -> None:
    server, _one, _two = pair
    assert udp_io(server, batched).recv(64) == []


@pytest.mark.parametrize("batched", KINDS)
def test_replies_go_back_to_each_asker(pair: tuple[socket.socket, ...], batched: bool) -> None:
    server, one, two = pair
    io = udp_io(server, batched)
    where = server.getsockname()[:2]
    for i in range(5):
        one.sendto(b"one-%d" % i, where)
        two.sendto(b"two-%d" % i, where)
    batch = _wait_queued(io, 10)
    assert sorted(data for data, _ in batch) == sorted(
        [b"one-%d" % i for i in range(5)] + [b"two-%d" % i for i in range(5)]
    )
    for data, address in batch:
        expected = (one if data.startswith(b"one") else two).getsockname()
        assert address[:2] == expected[:2]
    # Every other one answered, in an order the loop chose (replies skip some queries).
    assert io.send([(b"re:" + data, address) for data, address in batch[::2]]) == (0, 0)
    heard = [one.recv(100) for _ in range(sum(d.startswith(b"one") for d, _ in batch[::2]))]
    heard += [two.recv(100) for _ in range(sum(d.startswith(b"two") for d, _ in batch[::2]))]
    assert sorted(heard) == sorted(b"re:" + data for data, _ in batch[::2])


@pytest.mark.parametrize("batched", KINDS)
def test_an_address_made_elsewhere_is_parsed(pair: tuple[socket.socket, ...], batched: bool) -> None:
    """Not an address tuple the last batch handed out: the slow way, same result."""
    server, one, _two = pair
    io = udp_io(server, batched)
    address = tuple(one.getsockname())
    assert io.send([(b"unasked", address)]) == (0, 0)
    assert one.recvfrom(100) == (b"unasked", server.getsockname())


@pytest.mark.parametrize("batched", KINDS)
def test_the_batch_stops_at_the_limit_and_the_rest_waits(
    pair: tuple[socket.socket, ...], batched: bool
) -> None:
    server, one, _two = pair
    io = udp_io(server, batched)
    for i in range(100):
        one.sendto(i.to_bytes(2, "big"), server.getsockname()[:2])
    first = io.recv(64)
    assert len(first) == 64
    rest = _wait_queued(io, 36)
    assert [int.from_bytes(d, "big") for d, _ in first + rest] == list(range(100))
    assert io.recv(64) == []


@pytest.mark.parametrize("batched", KINDS)
def test_the_biggest_datagram_arrives_whole(batched: bool) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            big = bytes(range(256)) * 255 + b"x" * (65507 - 256 * 255)  # IPv4's largest payload
            client.sendto(big, server.getsockname())
            ((data, address),) = _wait_queued(udp_io(server, batched), 1)
            assert data == big and address == ("127.0.0.1", client.getsockname()[1])


@pytest.mark.parametrize("batched", KINDS)
def test_a_reply_that_cannot_go_is_counted_and_the_others_go(
    pair: tuple[socket.socket, ...], batched: bool
) -> None:
    """Port 0 is no destination (EINVAL): that reply is dropped with its errno,
    and the replies after it in the same batch are still sent."""
    server, one, _two = pair
    io = udp_io(server, batched)
    good = tuple(one.getsockname())
    bad = (HOSTS[server.family], 0, 0, 0)[: len(good)]
    dropped, error = io.send([(b"a", good), (b"lost", bad), (b"b", good)])
    assert (dropped, error) == (1, 22)
    assert [one.recv(10), one.recv(10)] == [b"a", b"b"]


@pytest.mark.skipif(not BUILT, reason=f"C extension not built: {native.UNAVAILABLE}")
def test_the_extension_refuses_what_it_cannot_send_with_an_error_not_a_crash() -> None:
    from geodns.dns import _netio  # type: ignore[attr-defined]

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        fd = sock.fileno()
        with pytest.raises(TypeError):
            _netio.send(fd, socket.AF_INET, "not a list")
        with pytest.raises(TypeError):
            _netio.send(fd, socket.AF_INET, [(b"x",)])
        with pytest.raises(TypeError):
            _netio.send(fd, socket.AF_INET, [("text", ("127.0.0.1", 53))])
        with pytest.raises(ValueError, match="not an address"):
            _netio.send(fd, socket.AF_INET, [(b"x", ("example.com", 53))])
        with pytest.raises(ValueError, match="family"):
            _netio.send(fd, socket.AF_UNIX, [(b"x", ("127.0.0.1", 53))])
        with pytest.raises(OSError):
            _netio.recv(-1, 8)  # a closed descriptor: the error, as the socket module gives it


def test_without_the_extension_the_socket_io_serves_and_start_up_says_why() -> None:
    """An install without a compiler: the import fails, the loop uses socket calls,
    and the daemon warns once, naming the cause and the remedy."""
    code = (
        "import logging, socket, sys; sys.modules['geodns.dns._netio'] = None\n"
        "logging.basicConfig(format='%(levelname)s %(message)s')\n"
        "from geodns.dns import native, udpio\n"
        "sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "print(type(udpio.udp_io(sock)).__name__, native.enabled)\n"
        "native.warn_if_unbuilt(); native.warn_if_unbuilt()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.split() == ["SocketIO", "False"]
    warnings = [line for line in run.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, run.stderr
    assert "C extension was not built" in warnings[0] and "gcc" in warnings[0]
