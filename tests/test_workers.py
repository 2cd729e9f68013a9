"""DNS worker processes (`server.workers`), run as an operator would: `geodns serve`
as a real process, real sockets, real signals.

Every worker answers (the kernel spreads queries over their SO_REUSEPORT
sockets), a drain is in every worker's answers by the time the API says it is
done, a reload reaches every worker, a worker that dies or hangs is replaced
while the others answer, and no worker outlives the main process.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import dns.message
import dns.query
import pytest
import pytest_asyncio

from geodns.workers.protocol import MAX_FRAME, ProtocolError, frame, read_frame, to_main
from tests.backends import HttpBackend
from tests.configs import write_zone
from tests.daemonproc import Proc, run_geodns, spawn
from tests.dnsclient import Endpoint
from tests.waiting import until

RECORDS = "  www: {type: A, pool: web}\n  static: {type: A, value: 192.0.2.1}\n"


def _config(root: Path, par: int, ams: int) -> Path:
    write_zone(root, RECORDS)
    path = root / "geodns.yaml"
    path.write_text(f"""\
server: {{dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state, workers: 2}}
datacenters: {{par: {{}}, ams: {{}}}}
checks: {{web: {{type: http, interval: 500ms, timeout: 400ms, rise: 1, fall: 1}}}}
pools:
  web:
    check: web
    datacenters: [par, ams]
    members:
      - {{address: 127.0.0.81, dc: par, check_port: {par}}}
      - {{address: 127.0.0.82, dc: ams, check_port: {ams}}}
""")
    return path


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Proc]:
    par, ams = await HttpBackend("127.0.0.81").start(), await HttpBackend("127.0.0.82").start()
    proc = await spawn(_config(tmp_path, par.port, ams.port))
    try:
        yield proc
    finally:
        await proc.kill()
        await par.stop()
        await ams.stop()


def _one(where: Endpoint, name: str) -> set[str]:
    """One query from a fresh socket (a new source port: any worker may get it)."""
    reply = dns.query.udp(dns.message.make_query(name, "A"), where.host, port=where.port, timeout=2)
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


async def _answers(where: Endpoint, name: str, count: int) -> list[set[str]]:
    return [await asyncio.to_thread(_one, where, name) for _ in range(count)]


async def _get(proc: Proc, path: str) -> tuple[int, str]:
    url = f"http://{proc.http.host}:{proc.http.port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def _per_worker_queries(proc: Proc) -> dict[str, float]:
    _, text = await _get(proc, "/metrics")
    return {
        m[1]: float(m[2])
        for m in re.finditer(r'geodns_dns_worker_queries_total\{worker="(\d+)"\} (\S+)', text)
    }


def _workers(main: int) -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{main}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return [p for p in pids if "geodns.workers.child" in Path(f"/proc/{p}/cmdline").read_text()]


def _index(pid: int) -> str:
    """A worker's number, from its command line (python -m geodns.workers.child N LEVEL)."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[3].decode()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # a zombie has closed its sockets


@pytest.mark.asyncio
async def test_every_worker_answers_and_the_load_is_spread(served: Proc) -> None:
    assert len(_workers(served.proc.pid)) == 2
    before = await _per_worker_queries(served)
    answers = await _answers(served.dns, "static.example.test.", 300)
    assert all(a == {"192.0.2.1"} for a in answers)
    await asyncio.sleep(1.2)  # workers report twice a second
    after = await _per_worker_queries(served)
    shares = {w: after[w] - before.get(w, 0.0) for w in after}
    assert set(shares) == {"1", "2"} and sum(shares.values()) >= 300
    # Source ports are random, so the kernel's hash splits them about evenly.
    assert min(shares.values()) >= 0.2 * sum(shares.values()), shares
    _, text = await _get(served, "/metrics")
    assert "geodns_dns_workers_ready 2.0" in text


@pytest.mark.asyncio
async def test_each_workers_cpu_memory_and_descriptors_are_metrics(served: Proc) -> None:
    """The process_* metrics are the main process's; each worker's own, by index,
    must be what the kernel says of that very process."""
    await _answers(served.dns, "static.example.test.", 50)
    _, text = await _get(served, "/metrics")

    def per_worker(name: str) -> dict[str, float]:
        return {m[1]: float(m[2]) for m in re.finditer(name + r'\{worker="(\d+)"\} (\S+)', text)}

    cpu = per_worker("geodns_dns_worker_cpu_seconds_total")
    rss = per_worker("geodns_dns_worker_resident_memory_bytes")
    fds = per_worker("geodns_dns_worker_open_fds")
    pids = {_index(pid): pid for pid in _workers(served.proc.pid)}
    assert set(cpu) == set(rss) == set(fds) == set(pids) == {"1", "2"}
    for index, pid in pids.items():
        spent, resident, open_fds = _kernel_says(pid)
        assert 0 < cpu[index] <= spent + 0.05, (cpu[index], spent)
        assert 0.8 * resident < rss[index] < 1.25 * resident, (rss[index], resident)
        assert rss[index] > 10 * 1024 * 1024  # an interpreter, not a stray reading
        assert abs(fds[index] - open_fds) <= 2 and fds[index] >= 4


def _kernel_says(pid: int) -> tuple[float, int, int]:
    """CPU seconds, resident bytes and open descriptors of `pid`, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    spent = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return spent, resident, len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.asyncio
async def test_a_drain_is_in_every_workers_answers_when_the_api_returns(served: Proc) -> None:
    assert all(a == {"127.0.0.81"} for a in await _answers(served.dns, "www.example.test.", 20))
    url = f"http://{served.http.host}:{served.http.port}/v1/overrides"
    drain = {"target": "dc=par", "state": "down", "reason": "test"}
    async with aiohttp.ClientSession() as session, session.post(url, json=drain) as r:
        assert r.status == 201
        body = await r.json()
    assert "warning" not in body
    # No waiting: the response came once every worker answered with the drain.
    assert all(a == {"127.0.0.82"} for a in await _answers(served.dns, "www.example.test.", 40))
    async with aiohttp.ClientSession() as session, session.delete(f"{url}/dc=par") as r:
        assert r.status == 200
    assert all(a == {"127.0.0.81"} for a in await _answers(served.dns, "www.example.test.", 40))


@pytest.mark.asyncio
async def test_a_reload_reaches_every_worker(served: Proc, tmp_path: Path) -> None:
    write_zone(tmp_path, RECORDS.replace("192.0.2.1", "192.0.2.99"))
    served.proc.send_signal(signal.SIGHUP)
    await served.wait_for_log("reloaded: serving", timeout=20)
    assert all(a == {"192.0.2.99"} for a in await _answers(served.dns, "static.example.test.", 40))
    assert not [line for line in served.log if "not every DNS worker" in line]


@pytest.mark.asyncio
async def test_a_dead_worker_is_replaced_while_the_other_answers(served: Proc) -> None:
    first, second = _workers(served.proc.pid)
    os.kill(first, signal.SIGKILL)
    await until(lambda: _gone(first), 5, "the worker to die")
    # Its sockets closed with it: every query now goes to the one left.
    assert all(a == {"192.0.2.1"} for a in await _answers(served.dns, "static.example.test.", 30))
    line = await served.wait_for_log("starting a new one", timeout=5)
    assert f"(pid {first}) was killed by SIGKILL" in line
    await until(lambda: len(_workers(served.proc.pid)) == 2, 10, "a new worker")
    assert second in _workers(served.proc.pid)
    await _until_ready(served)
    _, text = await _get(served, "/metrics")
    assert "geodns_dns_worker_restarts_total 1.0" in text
    assert all(a == {"192.0.2.1"} for a in await _answers(served.dns, "static.example.test.", 30))


async def _until_ready(proc: Proc, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (status := (await _get(proc, "/readyz"))[0]) != 200:
        assert time.monotonic() < deadline, f"/readyz still {status}"
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_a_hung_worker_is_noticed_said_and_replaced(served: Proc, tmp_path: Path) -> None:
    hung = _workers(served.proc.pid)[0]
    index = _index(hung)
    os.kill(hung, signal.SIGSTOP)  # alive, holding its sockets, answering nothing
    try:
        # A drain meanwhile is applied, and the answer says who does not answer with it yet.
        url = f"http://{served.http.host}:{served.http.port}/v1/overrides"
        drain = {"target": "dc=par", "state": "down", "reason": "test"}
        async with aiohttp.ClientSession() as session, session.post(url, json=drain) as r:
            assert r.status == 201
            body = await r.json()
        assert body["warning"] == f"applied, but not yet answered by: DNS worker {index}"
        # The command line says it too, and still succeeds: the drain is saved and applied.
        api = f"http://{served.http.host}:{served.http.port}"
        said = await asyncio.to_thread(run_geodns, "undrain", "dc=par", "--api", api, cwd=tmp_path)
        assert said.returncode == 0, said.stderr
        assert f"warning: applied, but not yet answered by: DNS worker {index}" in said.stderr
        async with aiohttp.ClientSession() as session, session.post(url, json=drain) as r:
            assert r.status == 201
        line = await served.wait_for_log("starting a new one", timeout=15)
        assert "sent nothing for" in line and "stuck" in line
        await until(lambda: hung not in _workers(served.proc.pid), 5, "the hung worker to go")
        await until(lambda: len(_workers(served.proc.pid)) == 2, 10, "a new worker")
        await _until_ready(served)
        assert all(a == {"192.0.2.1"} for a in await _answers(served.dns, "static.example.test.", 20))
        # The new worker started with the drain in force.
        assert all(a == {"127.0.0.82"} for a in await _answers(served.dns, "www.example.test.", 20))
    finally:
        if not _gone(hung):
            os.kill(hung, signal.SIGKILL)


@pytest.mark.asyncio
async def test_workers_end_with_the_main_process(served: Proc) -> None:
    workers = _workers(served.proc.pid)
    assert await served.stop() == 0
    await until(lambda: all(_gone(p) for p in workers), 2, "the workers to exit with SIGTERM")
    assert not [line for line in served.log if "starting a new one" in line or "ERROR" in line]


@pytest.mark.asyncio
async def test_workers_do_not_outlive_a_killed_main_process(served: Proc) -> None:
    workers = _workers(served.proc.pid)
    served.proc.kill()
    await served.proc.wait()
    await until(
        lambda: all(not Path(f"/proc/{p}").exists() or _gone(p) for p in workers), 5, "orphans to exit"
    )


@pytest.mark.asyncio
async def test_the_control_protocol_refuses_what_is_not_a_frame() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data((MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(ProtocolError, match="over the"):
        await read_frame(reader)
    reader = asyncio.StreamReader()
    reader.feed_data(frame(b"abc")[:5])
    reader.feed_eof()
    with pytest.raises(ProtocolError, match="inside a frame"):
        await read_frame(reader)
    reader = asyncio.StreamReader()
    reader.feed_data(to_main({"ready": 1}))
    reader.feed_eof()
    assert await read_frame(reader) == b'{"ready":1}'
    assert await read_frame(reader) is None
