"""A Route53 emulator for the sync tests: moto's server mode, as its own process,
spoken to over real HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from tests.ports import unused_port

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never reach for instance credentials
}


@dataclass
class Moto:
    url: str
    proc: subprocess.Popen[bytes]

    def client(self) -> Any:
        return boto3.client(
            "route53",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def new_zone(self, name: str = "example.com.") -> str:
        ref = f"geodns-test-{time.monotonic_ns()}"
        zone = self.client().create_hosted_zone(Name=name, CallerReference=ref)
        return str(zone["HostedZone"]["Id"]).split("/")[-1]

    def records(self, zone_id: str) -> dict[tuple[str, str, str | None], dict[str, Any]]:
        out = {}
        pages = self.client().get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
        for page in pages:
            for r in page["ResourceRecordSets"]:
                out[(r["Name"], r["Type"], r.get("SetIdentifier"))] = r
        return out


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    port = unused_port()
    env = {**os.environ, **FAKE_AWS}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    try:
        yield Moto(url, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAKE_AWS.items():
        monkeypatch.setenv(key, value)
