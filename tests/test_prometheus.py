"""The alert rules and the dashboard, proven on real parts: promtool checks and
unit-tests every alert; a real Prometheus scrapes a real geodns (Route53 sync
against the emulator), a datacenter breaks and the alert fires through the
Prometheus HTTP API; every query of the Grafana dashboard returns data there."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import dns.message
import dns.query
import pytest
import pytest_asyncio
import yaml

from tests.backends import HttpBackend, backends_on
from tests.configs import write_zone
from tests.conftest import REPO, needs
from tests.daemonproc import Proc, spawn
from tests.ports import unused_port
from tests.route53env import FAKE_AWS, Moto

RULES = REPO / "deploy" / "prometheus" / "geodns-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "geodns-rules.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "geodns.json"


def _alert_names(path: Path) -> set[str]:
    doc = yaml.safe_load(path.read_text())
    return {rule["alert"] for group in doc["groups"] for rule in group["rules"] if "alert" in rule}


@needs("promtool")
def test_promtool_checks_the_rules_and_their_unit_tests_cover_every_alert() -> None:
    check = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run(
        ["promtool", "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tested = {case["alertname"] for group in tests["tests"] for case in group.get("alert_rule_test", [])}
    fired = {
        case["alertname"]
        for group in tests["tests"]
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert _alert_names(RULES) == tested == fired  # each alert seen firing, and each one tested
    wanted = {
        "GeodnsDatacenterDown",
        "GeodnsPoolFailingOpen",
        "GeodnsMemberFlapping",
        "GeodnsProbesLate",
        "GeodnsRoute53SyncStale",
        "GeodnsRoute53Throttled",
        "GeodnsConfigReloadFailed",
        "GeodnsNotReady",
        "GeodnsPeerUnreachable",
        "GeodnsVantageIsolated",
    }
    assert wanted <= tested


def _geodns_config(tmp_path: Path, port: int, moto: Moto, zone: str) -> Path:
    write_zone(tmp_path, "  www: {type: A, pool: web}\n")
    (tmp_path / "geodns.yaml").write_text(
        'server: {mode: both, dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state,'
        " workers: 1}\n"
        "datacenters: {par: {}, ams: {}}\n"
        f"checks: {{web: {{type: http, port: {port}, path: /, interval: 300ms, timeout: 200ms, rise: 1,"
        " fall: 1, jitter: 0s}}\n"
        "pools:\n  web: {check: web, datacenters: [par, ams],"
        " members: [{address: 127.0.0.65, dc: par}, {address: 127.0.0.66, dc: ams}]}\n"
        f"route53:\n  endpoint_url: {moto.url}\n  debounce: 100ms\n  reconcile_interval: 2s\n"
        f"  records: [{{name: www.example.test., hosted_zone_id: {zone}, pool: web}}]\n"
    )
    return tmp_path / "geodns.yaml"


@pytest_asyncio.fixture
async def backends() -> AsyncIterator[dict[str, HttpBackend]]:
    async with backends_on("127.0.0.65", "127.0.0.66") as found:
        yield {"par": found["127.0.0.65"], "ams": found["127.0.0.66"]}


@pytest_asyncio.fixture
async def geodns(tmp_path: Path, backends: dict[str, HttpBackend], moto: Moto) -> AsyncIterator[Proc]:
    zone = moto.new_zone("example.test.")
    config = _geodns_config(tmp_path, backends["par"].port, moto, zone)
    running = await spawn(config, env=FAKE_AWS)
    try:
        yield running
    finally:
        await running.kill()


class Prometheus:
    def __init__(self, url: str, proc: asyncio.subprocess.Process) -> None:
        self.url = url
        self.proc = proc

    async def get(self, path: str, **params: str) -> Any:
        async with aiohttp.ClientSession() as session, session.get(self.url + path, params=params) as resp:
            body = await resp.json()
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        return list((await self.get("/api/v1/query", query=expr))["result"])


@pytest_asyncio.fixture
async def prometheus(tmp_path: Path, geodns: Proc) -> AsyncIterator[Prometheus]:
    # The rules as shipped, with every `for:` shortened to a second: the expressions are
    # the real ones; the durations are what the promtool unit tests cover.
    rules = re.sub(r"(?m)^(\s+for:) \S+$", r"\1 1s", RULES.read_text())
    assert rules != RULES.read_text()
    (tmp_path / "rules.yml").write_text(rules)
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp_path / "rules.yml")],
                "scrape_configs": [
                    {
                        "job_name": "geodns",
                        "static_configs": [{"targets": [f"{geodns.http.host}:{geodns.http.port}"]}],
                    }
                ],
            }
        )
    )
    port = unused_port()
    proc = await asyncio.create_subprocess_exec(
        shutil.which("prometheus") or "prometheus",
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    running = Prometheus(f"http://127.0.0.1:{port}", proc)
    try:
        async with asyncio.timeout(30), aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(running.url + "/-/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        yield running
    finally:
        proc.terminate()
        await proc.wait()


async def _wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (found := await check()):  # noqa: ASYNC110 - polling the Prometheus API
            await asyncio.sleep(0.5)
    assert found, what
    return found


def _dns_traffic(geodns: Proc) -> None:
    for name in ("www.example.test.", "www.example.test.", "nope.example.test."):
        dns.query.udp(dns.message.make_query(name, "A"), geodns.dns.host, port=geodns.dns.port, timeout=2)


@needs("prometheus")
@pytest.mark.asyncio
async def test_a_real_prometheus_fires_the_alert_and_every_dashboard_query_has_data(
    geodns: Proc, prometheus: Prometheus, backends: dict[str, HttpBackend]
) -> None:
    await asyncio.to_thread(_dns_traffic, geodns)

    async def scraped() -> bool:
        return bool(await prometheus.query('geodns_member_up{dc="par"} == 1'))

    await _wait_for("geodns scraped with par up", scraped)
    backends["par"].behaviour.status = 503  # par's backend fails its check

    async def firing() -> list[dict[str, Any]]:
        alerts = (await prometheus.get("/api/v1/alerts"))["alerts"]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "GeodnsDatacenterDown"
            and a["labels"].get("dc") == "par"
            and a["state"] == "firing"
        ]

    alert = (await _wait_for("GeodnsDatacenterDown{dc=par} firing", firing))[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"].startswith("datacenter par: every member down, seen by 127.0.0.1:")
    others = {a["labels"]["alertname"] for a in (await prometheus.get("/api/v1/alerts"))["alerts"]}
    assert "GeodnsPoolFailingOpen" not in others  # ams still answers
    assert "GeodnsRoute53SyncFailing" not in others

    async def weights_moved() -> bool:
        return bool(await prometheus.query("sum(geodns_route53_changes_total) > 2"))

    await _wait_for("Route53 weights moved off par", weights_moved)
    await asyncio.to_thread(_dns_traffic, geodns)
    await asyncio.sleep(3)  # a few more scrapes: rate() needs two samples after the change

    dashboard = json.loads(DASHBOARD.read_text())
    empty = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$instance", ".*").replace("$__rate_interval", "1m")
            if not await prometheus.query(expr):
                empty.append(f"{panel['title']}: {target['expr']}")
    assert empty == [], "dashboard queries without data:\n" + "\n".join(empty)
    assert len(dashboard["panels"]) >= 12
