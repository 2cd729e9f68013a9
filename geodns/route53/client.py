"""boto3 for Route53, with our own rate limit and retries.

botocore's retries are turned off: we need to know about every throttle (for
metrics and the token bucket), and PriorRequestNotComplete is not in
botocore's retry list. Synchronous on purpose: the sync loop runs it in a
thread, the CLI calls it directly.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import boto3
import botocore.config
import botocore.exceptions
from prometheus_client import Counter, Gauge, Histogram

from geodns.config.model import Route53Config
from geodns.errors import GeoDnsError
from geodns.route53.model import RecordSet

log = logging.getLogger(__name__)


class Route53Metrics(Protocol):
    """The metrics Route53 sync feeds (api.metrics.Metrics is one); injected so that
    route53 never imports the API layer."""

    r53_calls: Counter
    r53_throttles: Counter
    r53_changes: Counter
    r53_insync: Histogram
    r53_last_success: Gauge
    r53_drift: Counter
    r53_fail_open: Gauge
    r53_conflicts: Gauge


THROTTLES = frozenset(
    {"Throttling", "ThrottlingException", "PriorRequestNotComplete", "RequestLimitExceeded"}
)
MAX_ATTEMPTS = 8
PAGE_SIZE = "300"  # Route53's maximum for list_resource_record_sets


class Route53Error(GeoDnsError):
    """A Route53 call that failed for good (after retries, or not retryable)."""

    exit_code = 1  # the API failed, not the user's input: `plan` must not say "changes pending"


# Errors no retry can mend: fail at once with the reason instead of backing off for seconds.
FINAL_BOTO_ERRORS = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.NoRegionError,
    botocore.exceptions.ParamValidationError,
)
CONNECT_ATTEMPTS = 3  # an endpoint that cannot be reached: the next round (or run) tries again


class TokenBucket:
    """At most `rate` calls per second on average, bursts up to `rate`."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.clock = clock
        self.sleep = sleep
        self.stamp = clock()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens < 1:
                wait = (1 - self.tokens) / self.rate
                self.sleep(wait)
                self.stamp = self.clock()
                self.tokens = 1.0
            self.tokens -= 1


def make_boto_client(cfg: Route53Config) -> Any:
    try:
        return boto3.client(
            "route53",
            region_name=cfg.region,
            endpoint_url=cfg.endpoint_url,
            config=botocore.config.Config(
                retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30
            ),
        )
    except (botocore.exceptions.BotoCoreError, ValueError) as exc:  # a bad endpoint_url, a broken profile
        raise Route53Error(f"cannot create a Route53 client: {exc}") from None


class Route53Client:
    def __init__(
        self,
        cfg: Route53Config,
        metrics: Route53Metrics | None = None,
        api: Any = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api if api is not None else make_boto_client(cfg)
        self.metrics = metrics
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.bucket = TokenBucket(cfg.requests_per_second, sleep=sleep)
        self.calls: dict[str, int] = {}  # per operation, for the CLI and benchmarks

    def _count(self, operation: str, result: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        if self.metrics is not None:
            self.metrics.r53_calls.labels(operation, result).inc()

    def backoff(self, attempt: int) -> float:
        """Exponential with full jitter: 0.2 s, 0.4 s, ... capped at 20 s."""
        return self.rng.uniform(0, min(20.0, 0.2 * 2**attempt))

    def call(self, operation: str, **kwargs: Any) -> Any:
        for attempt in range(MAX_ATTEMPTS):
            self.bucket.acquire()
            try:
                response = getattr(self.api, operation)(**kwargs)
            except botocore.exceptions.ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", ""))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                retryable = code in THROTTLES or status >= 500
                if code in THROTTLES and self.metrics is not None:
                    self.metrics.r53_throttles.inc()
                self._count(operation, "throttled" if code in THROTTLES else "error")
                if not retryable or attempt == MAX_ATTEMPTS - 1:
                    raise Route53Error(
                        f"{operation}: {code or status}: {error.get('Message', exc)}"
                    ) from None
                delay = self.backoff(attempt)
                log.info(
                    "%s: %s, retrying in %.2fs (attempt %d)", operation, code or status, delay, attempt + 1
                )
                self.sleep(delay)
                continue
            except (botocore.exceptions.BotoCoreError, OSError) as exc:
                self._count(operation, "error")
                if isinstance(exc, FINAL_BOTO_ERRORS) or attempt >= CONNECT_ATTEMPTS - 1:
                    raise Route53Error(f"{operation}: {exc}") from None
                self.sleep(self.backoff(attempt))
                continue
            self._count(operation, "ok")
            return response
        raise AssertionError("unreachable")

    def list_zone(self, zone_id: str) -> list[RecordSet]:
        """Every record set of the zone, following NextRecordName/Type/Identifier:
        a weighted set split over two pages needs the identifier to resume."""
        out: list[RecordSet] = []
        kwargs: dict[str, Any] = {"HostedZoneId": zone_id, "MaxItems": PAGE_SIZE}
        for _ in range(100_000):  # bounded: a zone has at most 10,000 record sets by default
            page = self.call("list_resource_record_sets", **kwargs)
            out += [RecordSet.from_api(zone_id, r) for r in page["ResourceRecordSets"]]
            if not page.get("IsTruncated"):
                return out
            kwargs = {
                "HostedZoneId": zone_id,
                "MaxItems": PAGE_SIZE,
                "StartRecordName": page["NextRecordName"],
                "StartRecordType": page["NextRecordType"],
            }
            if page.get("NextRecordIdentifier"):
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
        raise Route53Error(f"list_resource_record_sets on {zone_id} did not end")

    def zone_name(self, zone_id: str) -> str:
        """The hosted zone's own name (lower case, with the final dot)."""
        zone = self.call("get_hosted_zone", Id=zone_id)["HostedZone"]
        return str(zone["Name"]).lower().rstrip(".") + "."

    def change(self, zone_id: str, batch: dict[str, object]) -> str:
        response = self.call("change_resource_record_sets", HostedZoneId=zone_id, ChangeBatch=batch)
        return str(response["ChangeInfo"]["Id"])

    def wait_insync(self, change_id: str, limit: float = 600.0) -> float:
        """Poll GetChange until INSYNC; returns the seconds it took."""
        start = time.monotonic()
        delay = 1.0
        while True:
            status = self.call("get_change", Id=change_id)["ChangeInfo"]["Status"]
            if status == "INSYNC":
                return time.monotonic() - start
            if time.monotonic() - start > limit:
                raise Route53Error(f"change {change_id} still {status} after {limit:g}s")
            self.sleep(delay)
            delay = min(delay * 1.5, 10.0)
