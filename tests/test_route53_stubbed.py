"""What moto cannot show: paging through a weighted set split over pages
(StartRecordIdentifier), throttling, PriorRequestNotComplete, PENDING -> INSYNC.
botocore's Stubber checks the exact requests we send."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from geodns.api.metrics import Metrics
from geodns.config.model import Route53Config
from geodns.route53.client import MAX_ATTEMPTS, Route53Client, Route53Error, TokenBucket


def stubbed() -> tuple[Route53Client, Stubber, list[float], Metrics]:
    api = boto3.client("route53", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(api)
    sleeps: list[float] = []
    metrics = Metrics()
    client = Route53Client(Route53Config(requests_per_second=1000), metrics, api, sleep=sleeps.append)
    return client, stub, sleeps, metrics


def rrset(set_id: str, weight: int, value: str) -> dict[str, Any]:
    return {
        "Name": "www.example.com.",
        "Type": "A",
        "SetIdentifier": set_id,
        "Weight": weight,
        "TTL": 60,
        "ResourceRecords": [{"Value": value}],
    }


def test_paging_resumes_inside_a_weighted_set() -> None:
    client, stub, _, _ = stubbed()
    stub.add_response(
        "list_resource_record_sets",
        {
            "ResourceRecordSets": [rrset("geodns-par", 10, "192.0.2.1")],
            "IsTruncated": True,
            "NextRecordName": "www.example.com.",
            "NextRecordType": "A",
            "NextRecordIdentifier": "geodns-ams",
            "MaxItems": "300",
        },
        {"HostedZoneId": "Z1", "MaxItems": "300"},
    )
    stub.add_response(
        "list_resource_record_sets",
        {
            "ResourceRecordSets": [rrset("geodns-ams", 0, "192.0.2.2")],
            "IsTruncated": False,
            "MaxItems": "300",
        },
        # The resume point must name the set identifier, or the page would start over at geodns-par.
        {
            "HostedZoneId": "Z1",
            "MaxItems": "300",
            "StartRecordName": "www.example.com.",
            "StartRecordType": "A",
            "StartRecordIdentifier": "geodns-ams",
        },
    )
    with stub:
        records = client.list_zone("Z1")
    stub.assert_no_pending_responses()
    assert [(r.set_id, r.weight) for r in records] == [("geodns-par", 10), ("geodns-ams", 0)]


BATCH: dict[str, Any] = {
    "Comment": "t",
    "Changes": [{"Action": "UPSERT", "ResourceRecordSet": rrset("geodns-par", 0, "192.0.2.1")}],
}
CHANGE_INFO = {"Id": "/change/C1", "Status": "PENDING", "SubmittedAt": "2026-11-26T00:00:00Z"}


@pytest.mark.parametrize("code", ["Throttling", "PriorRequestNotComplete"])
def test_throttles_are_retried_with_backoff(code: str) -> None:
    client, stub, sleeps, metrics = stubbed()
    for _ in range(3):
        stub.add_client_error("change_resource_record_sets", service_error_code=code, http_status_code=400)
    stub.add_response(
        "change_resource_record_sets",
        {"ChangeInfo": CHANGE_INFO},
        {"HostedZoneId": "Z1", "ChangeBatch": BATCH},
    )
    with stub:
        assert client.change("Z1", BATCH) == "/change/C1"
    stub.assert_no_pending_responses()
    assert len(sleeps) == 3
    assert all(0 <= s <= 0.2 * 2**i for i, s in enumerate(sleeps))  # exponential, full jitter
    assert metrics.registry.get_sample_value("geodns_route53_throttles_total") == 3.0
    labels = {"operation": "change_resource_record_sets", "result": "throttled"}
    assert metrics.registry.get_sample_value("geodns_route53_api_calls_total", labels) == 3.0


def test_server_errors_are_retried_and_client_errors_are_not() -> None:
    client, stub, sleeps, _ = stubbed()
    stub.add_client_error(
        "change_resource_record_sets", service_error_code="InternalFailure", http_status_code=500
    )
    stub.add_response("change_resource_record_sets", {"ChangeInfo": CHANGE_INFO})
    with stub:
        client.change("Z1", BATCH)
    assert len(sleeps) == 1
    client, stub, sleeps, _ = stubbed()
    stub.add_client_error(
        "change_resource_record_sets",
        service_error_code="InvalidChangeBatch",
        service_message="Tried to delete resource record set that does not exist",
        http_status_code=400,
    )
    with stub, pytest.raises(Route53Error, match="InvalidChangeBatch: Tried to delete"):
        client.change("Z1", BATCH)
    assert sleeps == []


def test_retries_give_up_after_a_bound() -> None:
    client, stub, sleeps, _ = stubbed()
    for _ in range(MAX_ATTEMPTS):
        stub.add_client_error(
            "change_resource_record_sets", service_error_code="Throttling", http_status_code=400
        )
    with stub, pytest.raises(Route53Error, match="Throttling"):
        client.change("Z1", BATCH)
    assert len(sleeps) == MAX_ATTEMPTS - 1


def test_pending_until_insync() -> None:
    client, stub, sleeps, _ = stubbed()
    for status in ("PENDING", "PENDING", "INSYNC"):
        stub.add_response(
            "get_change", {"ChangeInfo": {**CHANGE_INFO, "Status": status}}, {"Id": "/change/C1"}
        )
    with stub:
        client.wait_insync("/change/C1")
    stub.assert_no_pending_responses()
    assert sleeps == [1.0, 1.5]


def test_token_bucket_spaces_calls() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(5.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(15):
        bucket.acquire()
    assert waits[:1] == [pytest.approx(0.2)]  # the burst of 5 is free, then one call per 0.2 s
    assert now[0] == pytest.approx(2.0)  # 15 calls at 5/s with a burst of 5: 2 s
