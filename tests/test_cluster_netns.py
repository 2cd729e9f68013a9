"""The cluster's scenarios with real partitions: one network namespace per
datacenter (its backend and its geodns instance), joined by a router namespace
the tests create and cut. Every scenario asserts what each instance answers.
Needs root and iproute2 (CI has both); skipped with the reason elsewhere."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.netlab import Lab, available, www_answer

DCS = ("par", "ams", "nyc")
TOKEN = "netns-cluster-secret"
INTERVAL, FALL, RISE, CLUSTER_INTERVAL = 0.5, 2, 2, 0.5
BOUND = INTERVAL * FALL + CLUSTER_INTERVAL + 1.0  # the bound for a failover to cross the cluster

pytestmark = pytest.mark.skipif(
    available() is not None and os.environ.get("GEODNS_REQUIRE_TOOLS") != "1", reason=str(available())
)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(DCS)
    try:
        lab.start_cluster(
            tmp_path, TOKEN, interval=INTERVAL, rise=RISE, fall=FALL, cluster_interval=CLUSTER_INTERVAL
        )
        everyone = {lab.backend_ip(dc) for dc in DCS}
        _until(
            lab, lambda a: all(v == everyone for v in a.values()), 20.0, "all three answering with all three"
        )
        # Each answers with all three alone at first: the scenarios start once the cluster
        # has formed (every instance counts both peers), or a cut finds no agreed state yet.
        deadline = time.monotonic() + 20.0
        while not all(_counts_its_peers(lab, dc) for dc in DCS):
            assert time.monotonic() < deadline, "the cluster never formed"
            time.sleep(0.1)
        yield lab
    finally:
        lab.close()


def answers(lab: Lab, cut_off: str | None = None) -> dict[str, set[str] | None]:
    """Each instance's answer, asked from the router (a cut-off one from inside its own datacenter)."""
    out = {}
    for dc in DCS:
        out[dc] = lab.call(www_answer, lab.instance_ip(dc), inside_dc=dc if dc == cut_off else None)
    return out


def _counts_its_peers(lab: Lab, dc: str) -> bool:
    def peers(address: str) -> list[dict[str, object]]:
        with urllib.request.urlopen(f"http://{address}:8053/v1/cluster", timeout=2) as response:
            return list(json.loads(response.read())["peers"])

    found = lab.call(peers, lab.instance_ip(dc))
    return len(found) == len(DCS) - 1 and all(p["counted"] for p in found)


def _readyz(address: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address}:8053/readyz", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _until(
    lab: Lab,
    ok: Callable[[dict[str, set[str] | None]], bool],
    timeout: float,
    what: str,
    cut_off: str | None = None,
) -> float:
    began = time.monotonic()
    while True:
        seen = answers(lab, cut_off)
        if ok(seen):
            return time.monotonic() - began
        assert time.monotonic() - began < timeout, f"timed out waiting for {what}: {seen}"
        time.sleep(0.1)


def _holds(lab: Lab, expected: dict[str, set[str]], seconds: float, cut_off: str | None = None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        seen = answers(lab, cut_off)
        assert seen == expected, seen
        time.sleep(0.2)


def test_s1_par_backends_die_and_every_instance_moves_off_par(lab: Lab) -> None:
    lab.kill("backend-par")
    off_par = {lab.backend_ip("ams"), lab.backend_ip("nyc")}
    took = _until(lab, lambda a: all(v == off_par for v in a.values()), BOUND + 2, "all off par")
    assert took <= BOUND + 0.5, took


def test_s2_par_burns_and_the_others_move_off_par(lab: Lab) -> None:
    lab.kill("backend-par")
    lab.kill("geodns-par")
    off_par = {lab.backend_ip("ams"), lab.backend_ip("nyc")}
    took = _until(
        lab, lambda a: a["ams"] == off_par and a["nyc"] == off_par, BOUND + 2, "ams and nyc off par"
    )
    assert took <= BOUND + 0.5, took


def test_s3_par_cut_off_holds_the_agreed_state_and_rejoins(lab: Lab) -> None:
    everyone = {lab.backend_ip(dc) for dc in DCS}
    off_par = everyone - {lab.backend_ip("par")}
    lab.cut("par")
    _until(
        lab,
        lambda a: a["ams"] == off_par and a["nyc"] == off_par and a["par"] == everyone,
        BOUND + 3,
        "ams and nyc off par, par holding",
        cut_off="par",
    )
    _holds(lab, {"par": everyone, "ams": off_par, "nyc": off_par}, 2.0, cut_off="par")
    status, text = lab.call(_readyz, lab.instance_ip("par"), inside_dc="par")
    assert status == 503 and "minority partition" in text
    lab.cut("par", up=True)
    # Back together: all three agree again (par comes back after its rise).
    _until(
        lab,
        lambda a: all(v == everyone for v in a.values()),
        INTERVAL * RISE + CLUSTER_INTERVAL + 3,
        "agreement",
    )
    # par hears its peers again within its retry and a long-poll: ready again.
    deadline = time.monotonic() + CLUSTER_INTERVAL + 1.5 + 3.0
    while lab.call(_readyz, lab.instance_ip("par"))[0] != 200:
        assert time.monotonic() < deadline, lab.call(_readyz, lab.instance_ip("par"))
        time.sleep(0.1)


def test_s4_an_instance_that_loses_its_network_changes_nobody_s_answers(lab: Lab) -> None:
    everyone = {lab.backend_ip(dc) for dc in DCS}
    lab.lose_routes("ams")
    _holds(lab, dict.fromkeys(DCS, everyone), INTERVAL * FALL + 3.0, cut_off="ams")


def test_s5_one_broken_path_does_not_take_a_datacenter_down(lab: Lab) -> None:
    everyone = {lab.backend_ip(dc) for dc in DCS}
    lab.blackhole("ams", lab.backend_ip("nyc"))
    _holds(lab, dict.fromkeys(DCS, everyone), INTERVAL * FALL + 3.0)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        return str(response.read().decode())


def _post(url: str) -> int:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    request = urllib.request.Request(url, method="POST", data=b"{}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _reload_all(lab: Lab, tmp_path: Path, old: str, new: str) -> None:
    for dc in DCS:
        path = tmp_path / dc / "geodns.yaml"
        path.write_text(path.read_text().replace(old, new))
        lab.named[f"geodns-{dc}"].send_signal(signal.SIGHUP)


def test_s6_a_bad_check_everywhere_is_held_and_a_real_loss_after_release_fails_over(
    lab: Lab, tmp_path: Path
) -> None:
    everyone = {lab.backend_ip(dc) for dc in DCS}
    _reload_all(lab, tmp_path, "expect_body: OK", "expect_body: NOPE")  # every member fails, everywhere
    # The downs arriving before the line is crossed apply until it is (probes are spread over an
    # interval); then the governor holds the state before the surge, and keeps holding it.
    _until(
        lab,
        lambda a: (
            all(v == everyone for v in a.values())
            and all(
                "geodns_governor_hold 1.0" in lab.call(_get, f"http://{lab.instance_ip(dc)}:8053/metrics")
                for dc in DCS
            )
        ),
        INTERVAL * FALL + 4.0,
        "the governor holding everywhere",
    )
    _holds(lab, dict.fromkeys(DCS, everyone), 3.0)
    _reload_all(lab, tmp_path, "expect_body: NOPE", "expect_body: OK")  # the check is mended
    for dc in DCS:
        status = lab.call(_post, f"http://{lab.instance_ip(dc)}:8053/v1/cluster/release")
        assert status in (200, 409), status  # 409: its hold had already ended as the surge cleared
    time.sleep(INTERVAL * RISE + 1.0)
    lab.kill("backend-par")  # and then a real datacenter loss
    off_par = everyone - {lab.backend_ip("par")}
    _until(lab, lambda a: all(v == off_par for v in a.values()), BOUND + 3, "all off par after the release")
