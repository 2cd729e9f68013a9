"""Route53 sync at scale against moto's server mode: a zone with N pooled
records in 3 datacenters. API calls and wall time for the first sync, for a
no-op reconcile (target: list calls only) and for one datacenter failing
(target: the fewest change batches Route53's limits allow).

    python bench/route53_sync.py [--records 1000]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402

from geodns.config import load  # noqa: E402
from geodns.health.health import Health, Status, probe_keys  # noqa: E402
from geodns.health.snapshot import HealthSnapshot  # noqa: E402
from geodns.route53.client import Route53Client  # noqa: E402
from geodns.route53.plan import MAX_BATCH_RECORDS, batches  # noqa: E402
from geodns.route53.sync import Reconciler  # noqa: E402

FAKE = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # thousands of change lines would measure the terminal
    os.environ.update(FAKE)
    port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        api = boto3.client("route53", endpoint_url=url, region_name="us-east-1")
        zone = api.create_hosted_zone(Name="example.com.", CallerReference="bench")["HostedZone"]["Id"].split(
            "/"
        )[-1]
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            members = "\n".join(
                f"      - {{address: 127.0.{i}.1, dc: {dc}}}"
                for i, dc in enumerate(("par", "ams", "nyc"), start=1)
            )
            records = "\n".join(
                f"    - {{name: host{i}.example.com., hosted_zone_id: {zone}, pool: web}}"
                for i in range(args.records)
            )
            (root / "geodns.yaml").write_text(f"""\
server: {{mode: route53, state_dir: state}}
datacenters: {{par: {{}}, ams: {{}}, nyc: {{}}}}
checks: {{web: {{type: tcp, port: 9}}}}
pools:
  web:
    check: web
    datacenters: [par, ams, nyc]
    members:
{members}
route53:
  endpoint_url: {url}
  requests_per_second: 100
  records:
{records}
""")
            config = load(root / "geodns.yaml")
        all_up = HealthSnapshot(1, {k: Health(status=Status.UP) for k in probe_keys(config)})
        par_down = HealthSnapshot(
            2,
            {
                k: Health(status=Status.DOWN if k.address == "127.0.1.1" else Status.UP)
                for k in probe_keys(config)
            },
        )
        print(
            f"{args.records} pooled records x 3 datacenters = {3 * args.records} weighted record sets, "
            f"one hosted zone (moto server over HTTP)"
        )
        print(
            f"{'round':<22} {'wall':>7} {'list':>5} {'change':>7} {'get_change':>11} "
            f"{'changes':>8} {'batches':>8}"
        )
        for label, snap in (
            ("first sync", all_up),
            ("no-op reconcile", all_up),
            ("one datacenter fails", par_down),
            ("it recovers", all_up),
        ):
            assert config.route53 is not None
            client = Route53Client(config.route53)
            reconciler = Reconciler(config, client)
            t0 = time.perf_counter()
            result = reconciler.reconcile(snap, force=True)
            wall = time.perf_counter() - t0
            assert result.ok, result.errors
            n_batches = sum(len(b) for b in batches(result.applied).values())
            print(
                f"{label:<22} {wall:>6.2f}s {client.calls.get('list_resource_record_sets', 0):>5} "
                f"{client.calls.get('change_resource_record_sets', 0):>7} "
                f"{client.calls.get('get_change', 0):>11} "
                f"{len(result.applied):>8} {n_batches:>8}"
            )
        upserts = 2 * args.records  # the failed datacenter's set and the one taking over, per name
        print(
            f"\nfewest batches Route53 allows for {upserts} UPSERTs of one value each (counted twice, "
            f"< 1,000 per batch): {-(-2 * upserts // MAX_BATCH_RECORDS)}"
        )
    finally:
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
