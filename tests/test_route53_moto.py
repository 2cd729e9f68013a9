"""Route53 sync against moto's server mode over real HTTP: mapping, failover,
recovery, drift repair, ownership refusal, fail-open, safety, and the plan
and sync commands with their exit codes."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from geodns.api.metrics import Metrics
from geodns.config import Config, load
from geodns.health.health import Status
from geodns.health.overrides import Override
from geodns.route53.client import Route53Client
from geodns.route53.sync import Reconciler
from tests.backends import HttpBackend
from tests.configs import snapshot
from tests.daemonproc import run_geodns, spawn
from tests.route53env import FAKE_AWS, Moto

MEMBERS = {"par": ["127.0.0.91", "127.0.0.92"], "ams": ["127.0.0.93"], "nyc": ["127.0.0.94"]}


def write_config(
    tmp: Path,
    moto: Moto,
    zone_id: str,
    *,
    policy: str = "failover",
    extra_records: str = "",
    port: int = 9,
    interval: str = "2s",
    timeout: str = "500ms",
) -> Path:
    members = "\n".join(
        f"      - {{address: {a}, dc: {dc}, weight: {3 if dc == 'par' else 2}}}"
        for dc, addrs in MEMBERS.items()
        for a in addrs
    )
    (tmp / "geodns.yaml").write_text(f"""\
server: {{mode: route53, state_dir: state, http_listen: "127.0.0.1:0"}}
datacenters: {{par: {{}}, ams: {{}}, nyc: {{}}}}
checks:
  web: {{type: http, port: {port}, path: /health, interval: {interval}, timeout: {timeout}, rise: 2, fall: 3,
         jitter: 0s}}
pools:
  web:
    check: web
    policy: {policy}
    datacenters: [par, ams, nyc]
    members:
{members}
      - {{address: "2001:db8::1", dc: ams, check_address: 127.0.0.93}}
route53:
  endpoint_url: {moto.url}
  owner: geodns
  debounce: 100ms
  reconcile_interval: 1s
  records:
    - {{name: www.example.com., hosted_zone_id: {zone_id}, pool: web, ttl: 60}}
{extra_records}""")
    return tmp / "geodns.yaml"


def reconciler(config: Config, metrics: Metrics | None = None) -> Reconciler:
    assert config.route53 is not None
    return Reconciler(config, Route53Client(config.route53, metrics), metrics)


async def weight_of(moto: Moto, zone: str, set_id: str, want: int, within: float) -> float:
    """Seconds until the record set `set_id` has weight `want` in the emulator."""
    start = time.monotonic()
    current: dict[str, tuple[int, list[str]]] = {}
    while time.monotonic() - start < within:
        current = await asyncio.to_thread(weights, moto, zone)
        if set_id in current and current[set_id][0] == want:
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"{set_id} never reached weight {want}: {current}")


def weights(moto: Moto, zone_id: str, rtype: str = "A") -> dict[str, tuple[int, list[str]]]:
    return {
        set_id: (r["Weight"], sorted(v["Value"] for v in r["ResourceRecords"]))
        for (name, t, set_id), r in moto.records(zone_id).items()
        if name == "www.example.com." and t == rtype and set_id
    }


def test_mapping_failover_recovery_and_fail_open(tmp_path: Path, moto: Moto) -> None:
    zone = moto.new_zone()
    config = load(write_config(tmp_path, moto, zone))
    r = reconciler(config)
    result = r.reconcile(snapshot(config))
    assert result.ok and len(result.applied) == 4  # A for par, ams, nyc; AAAA for ams
    assert weights(moto, zone) == {
        "geodns-par": (6, ["127.0.0.91", "127.0.0.92"]),  # failover: the chosen datacenter's weight
        "geodns-ams": (0, ["127.0.0.93"]),
        "geodns-nyc": (0, ["127.0.0.94"]),
    }
    assert weights(moto, zone, "AAAA") == {"geodns-ams": (1, ["2001:db8::1"])}
    assert r.plan(snapshot(config))[0].in_sync

    # One par member down: par keeps the traffic with what is left.
    r.reconcile(snapshot(config, {"127.0.0.91"}))
    assert weights(moto, zone)["geodns-par"] == (3, ["127.0.0.92"])
    # par down: ams takes it; par keeps its values (a weight-0 set still needs them).
    plan, _ = r.plan(snapshot(config, {"127.0.0.91", "127.0.0.92"}))
    lines = [c.line() for c in plan.changes]
    assert (
        "~ www.example.com. A geodns-par weight 3 -> 0; values 127.0.0.92 -> 127.0.0.91, 127.0.0.92 "
        "(par down: 2/2 members failing)" in lines
    )
    assert "~ www.example.com. A geodns-ams weight 0 -> 2 (1/1 members up)" in lines
    r.reconcile(snapshot(config, {"127.0.0.91", "127.0.0.92"}))
    assert weights(moto, zone)["geodns-ams"] == (2, ["127.0.0.93"])
    assert weights(moto, zone)["geodns-par"][0] == 0
    # Everything down: fail open with the configured weights, never all zero.
    metrics = Metrics()
    r = reconciler(config, metrics)
    r.reconcile(snapshot(config, {a for addrs in MEMBERS.values() for a in addrs}))
    assert {k: w for k, (w, _) in weights(moto, zone).items()} == {
        "geodns-par": 6,
        "geodns-ams": 2,
        "geodns-nyc": 2,
    }
    assert metrics.registry.get_sample_value("geodns_route53_fail_open") == 2.0  # the A and the AAAA name
    # Recovery.
    r.reconcile(snapshot(config))
    assert weights(moto, zone)["geodns-par"] == (6, ["127.0.0.91", "127.0.0.92"])
    assert {k: w for k, (w, _) in weights(moto, zone).items()}["geodns-nyc"] == 0


def test_weighted_policy_and_drains(tmp_path: Path, moto: Moto) -> None:
    zone = moto.new_zone()
    config = load(write_config(tmp_path, moto, zone, policy="weighted"))
    r = reconciler(config)
    r.reconcile(snapshot(config))
    assert {k: w for k, (w, _) in weights(moto, zone).items()} == {
        "geodns-par": 6,
        "geodns-ams": 2,
        "geodns-nyc": 2,
    }
    drained = Override("dc", "nyc", Status.DOWN, "fiber cut", 1.0)
    plan, _ = r.plan(snapshot(config, overrides=(drained,)))
    assert [c.line() for c in plan.changes] == [
        "~ www.example.com. A geodns-nyc weight 2 -> 0 (nyc down: 1/1 members failing, forced by dc=nyc)"
    ]


def test_drift_is_repaired(tmp_path: Path, moto: Moto) -> None:
    zone = moto.new_zone()
    config = load(write_config(tmp_path, moto, zone))
    metrics = Metrics()
    r = reconciler(config, metrics)
    r.reconcile(snapshot(config))
    # Someone edits a weight in the console.
    moto.client().change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": "www.example.com.",
                        "Type": "A",
                        "SetIdentifier": "geodns-nyc",
                        "Weight": 50,
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "127.0.0.94"}],
                    },
                }
            ]
        },
    )
    result = r.reconcile(snapshot(config))
    assert [c.line() for c in result.applied] == [
        "~ www.example.com. A geodns-nyc weight 50 -> 0 (1/1 members up)"
    ]
    assert weights(moto, zone)["geodns-nyc"] == (0, ["127.0.0.94"])
    assert metrics.registry.get_sample_value("geodns_route53_drift_repairs_total") == 1.0


def test_foreign_records_are_refused_never_overwritten(tmp_path: Path, moto: Moto) -> None:
    zone = moto.new_zone()
    client = moto.client()
    for name, extra in (
        ("api.example.com.", {}),
        ("cdn.example.com.", {"SetIdentifier": "someone-else", "Weight": 10}),
    ):
        client.change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "CREATE",
                        "ResourceRecordSet": {
                            "Name": name,
                            "Type": "A",
                            "TTL": 300,
                            "ResourceRecords": [{"Value": "198.51.100.1"}],
                            **extra,
                        },
                    }
                ]
            },
        )
    records = (
        f"    - {{name: api.example.com., hosted_zone_id: {zone}, pool: web}}\n"
        f"    - {{name: cdn.example.com., hosted_zone_id: {zone}, pool: web}}\n"
    )
    config = load(write_config(tmp_path, moto, zone, extra_records=records))
    result = reconciler(config).reconcile(snapshot(config))
    assert not result.ok
    assert sorted(result.plan.conflicts) == [
        f"api.example.com. A in {zone} also holds a simple (non-weighted) record not owned by 'geodns'; "
        "refusing to touch it (Route53 cannot mix them)",
        f"cdn.example.com. A in {zone} also holds weighted set 'someone-else' not owned by 'geodns'; "
        "refusing to touch it (Route53 cannot mix them)",
    ]
    after = moto.records(zone)
    assert after[("api.example.com.", "A", None)]["ResourceRecords"] == [{"Value": "198.51.100.1"}]
    assert ("cdn.example.com.", "A", "geodns-par") not in after
    assert ("www.example.com.", "A", "geodns-par") in after  # the rest still syncs


def test_safety_holds_back_config_driven_mass_changes(tmp_path: Path, moto: Moto) -> None:
    zone = moto.new_zone()
    names = "".join(
        f"    - {{name: n{i}.example.com., hosted_zone_id: {zone}, pool: web}}\n" for i in range(5)
    )
    config = load(write_config(tmp_path, moto, zone, extra_records=names))
    r = reconciler(config)
    r.reconcile(snapshot(config))  # 6 names x 4 sets = 24 owned
    fewer = load(write_config(tmp_path, moto, zone))  # drop 5 names: 20 deletes of 24 owned
    r = reconciler(fewer)
    plan, _ = r.plan(snapshot(fewer, {"127.0.0.91", "127.0.0.92"}))
    assert len(plan.refused) == 20 and all(c.action == "DELETE" for c in plan.refused)
    assert plan.changes and all(c.action == "UPSERT" for c in plan.changes)  # health is never blocked
    assert "held back" in plan.notes[0]
    result = r.reconcile(snapshot(fewer), force=True)
    assert len([c for c in result.applied if c.action == "DELETE"]) == 20
    assert not any(name.startswith("n0.") for (name, _, _) in moto.records(zone))


def test_plan_and_sync_commands(tmp_path: Path, moto: Moto) -> None:
    zone = moto.new_zone()
    write_config(tmp_path, moto, zone)  # checks on port 9: nothing listens, every member fails
    plan = run_geodns("plan", "-c", "geodns.yaml", cwd=tmp_path)
    assert plan.returncode == 2, plan.stderr
    assert (
        "+ www.example.com. A geodns-par weight 6 ttl 60 values 127.0.0.91, 127.0.0.92 "
        "(par down: 2/2 members failing; every datacenter down: failing open)" in plan.stdout.splitlines()
    )
    synced = run_geodns("sync", "--once", "-c", "geodns.yaml", cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert "applied 4 change(s) in 1 batch(es); INSYNC after" in synced.stdout
    again = run_geodns("plan", "-c", "geodns.yaml", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "in sync: 4 record set(s) owned, nothing to change"
    broken = run_geodns("plan", "-c", "missing.yaml", cwd=tmp_path)
    assert broken.returncode == 1 and "Traceback" not in broken.stderr  # plan: 2 is "changes pending"


def test_conflicts_make_plan_fail(tmp_path: Path, moto: Moto) -> None:
    zone = moto.new_zone()
    moto.client().change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": "www.example.com.",
                        "Type": "A",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": "198.51.100.1"}],
                    },
                }
            ]
        },
    )
    write_config(tmp_path, moto, zone)
    plan = run_geodns("plan", "-c", "geodns.yaml", cwd=tmp_path)
    assert plan.returncode == 1
    assert "error: www.example.com. A in" in plan.stderr and "refusing to touch it" in plan.stderr


@pytest.mark.asyncio
async def test_serve_in_route53_mode_moves_weights_off_a_dying_datacenter(tmp_path: Path, moto: Moto) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.91", 0))
        port = s.getsockname()[1]
    backends = {a: await HttpBackend(a).start(port=port) for addrs in MEMBERS.values() for a in addrs}
    zone = moto.new_zone()
    write_config(tmp_path, moto, zone, port=port, interval="500ms", timeout="200ms")
    daemon = await spawn(tmp_path / "geodns.yaml", env=FAKE_AWS, dns=False)
    try:
        await weight_of(moto, zone, "geodns-par", 6, within=10)
        for address in MEMBERS["par"]:
            await backends[address].stop()
        took = await weight_of(moto, zone, "geodns-par", 0, within=10)
        assert took <= 0.5 * 3 + 2.0, took  # interval x fall + 2 s (the bound)
        assert (await asyncio.to_thread(weights, moto, zone))["geodns-ams"][0] == 2
        # par's two members may fail in the same round (6 -> 0) or one after the other (6 -> 3 -> 0).
        line = await daemon.wait_for_log("(par down: 2/2 members failing)")
        assert "route53: ~ www.example.com. A geodns-par weight " in line and " -> 0" in line

        for address in MEMBERS["par"]:
            await backends[address].start(port=port)
        await weight_of(moto, zone, "geodns-par", 6, within=10)
        # Afterwards there is nothing left to do.
        plan = await asyncio.to_thread(run_geodns, "plan", "-c", "geodns.yaml", cwd=tmp_path)
        assert plan.returncode == 0, plan.stdout + plan.stderr
    finally:
        await daemon.kill()
        for b in backends.values():
            await b.stop()


@pytest.mark.asyncio
async def test_one_writer_among_instances_and_a_hand_over_when_it_dies(tmp_path: Path, moto: Moto) -> None:
    """Two instances sync the same hosted zone: only the smallest name writes; killed,
    the other takes over within cluster.timeout and writes the next change."""
    with socket.socket() as s:
        s.bind(("127.0.0.91", 0))
        port = s.getsockname()[1]
    backends = {a: await HttpBackend(a).start(port=port) for addrs in MEMBERS.values() for a in addrs}
    zone = moto.new_zone()
    http = {}
    for name in ("a", "b"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            http[name] = s.getsockname()[1]
    procs = {}
    try:
        for name, other in (("a", "b"), ("b", "a")):
            folder = tmp_path / name
            folder.mkdir()
            path = write_config(folder, moto, zone, port=port, interval="500ms", timeout="200ms")
            (folder / "token").write_text("writer-test-token")
            (folder / "token").chmod(0o600)
            text = path.read_text().replace(
                'http_listen: "127.0.0.1:0"}', f'http_listen: "127.0.0.1:0", name: {name}}}'
            )
            text += (
                f"cluster:\n  token_file: token\n  interval: 500ms\n  timeout: 1500ms\n"
                f"  peers: [{{name: {other}, url: 'http://127.0.0.1:{http[other]}'}}]\n"
            )
            path.write_text(text)
            procs[name] = await spawn(path, env=FAKE_AWS, dns=False, http_listen=f"127.0.0.1:{http[name]}")

        await weight_of(moto, zone, "geodns-par", 6, within=10)
        try:
            await procs["b"].wait_for_log("not writing (a writes)")
        except TimeoutError:
            raise AssertionError("".join(procs["b"].log[-30:])) from None
        assert not any("route53: ~" in line or "route53: +" in line for line in procs["b"].log)
        assert any("route53: +" in line for line in procs["a"].log)

        await procs["a"].kill()
        try:
            await procs["b"].wait_for_log("Route53 writer: a -> b", timeout=5)
        except TimeoutError:
            raise AssertionError("b never took over:\n" + "".join(procs["b"].log[-40:])) from None
        for address in MEMBERS["par"]:
            await backends[address].stop()
        took = await weight_of(moto, zone, "geodns-par", 0, within=10)
        assert took <= 0.5 * 3 + 1.5 + 2.0, took  # interval x fall + cluster.timeout + 2 s
        assert any("route53: ~ www.example.com. A geodns-par weight" in line for line in procs["b"].log)
    finally:
        for proc in procs.values():
            await proc.kill()
        for b in backends.values():
            await b.stop()
