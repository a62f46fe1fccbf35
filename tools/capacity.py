#!/usr/bin/env python3
"""Estimate the peak load, Lambda concurrency, S3 requests and monthly cost of a Callflow workload.

    python tools/capacity.py --calls-per-day 40000 --events-per-call 25 --event-size-kb 0.5 \\
        --peak-multiplier 3 --business-hours 10

The estimate is printed twice, for producers that post one event per request
and for producers that post batches (--batch-size, 100 by default). The model:

- Calls arrive during --business-hours hours a day. The average rate in those
  hours times --peak-multiplier is the peak rate.
- Lambda concurrency is requests per second times the storer's duration
  (Little's law), rounded up. The default durations are measured by
  bench/storer_write.py. Replace them with the Duration your functions show
  in CloudWatch.
- Every stored event costs 3 S3 PUTs (the event object and two zero-byte index
  entries). Each call is read back --reads-per-call times with
  GET /calls/{callId}/events: one LIST per 1,000 events and one GET per event.
- Storage counts the canonical JSON of each event in S3 Standard, because the
  index entries contain no data. The steady state is --retention-days days of
  events.
- A month is 30 days. Prices are us-east-1 list prices without the free tier,
  Savings Plans or taxes.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields

# ---------------------------------------------------------------------------
# Prices: AWS list prices for us-east-1 in US dollars, as known on
# PRICES_RECORDED_ON. The tool does not read them from AWS, so check them
# against the Lambda, API Gateway, S3 and CloudWatch pricing pages before
# relying on an estimate.

PRICES_RECORDED_ON = "2026-12-04"

# Lambda on arm64: per GB-second by monthly tier (tier size in GB-seconds), and per request.
LAMBDA_ARM64_GB_SECOND_TIERS = (
    (7_500_000_000, 0.0000133334),
    (11_250_000_000, 0.0000120001),
    (math.inf, 0.0000106667),
)
LAMBDA_PRICE_PER_MILLION_REQUESTS = 0.20

# API Gateway REST APIs: per million requests by monthly tier (tier size in requests).
API_GATEWAY_REST_TIERS = (
    (333_000_000, 3.50),
    (667_000_000, 2.80),
    (19_000_000_000, 2.38),
    (math.inf, 1.51),
)

# S3 Standard.
S3_PUT_PRICE_PER_THOUSAND = 0.005  # PUT, COPY, POST and LIST requests
S3_GET_PRICE_PER_THOUSAND = 0.0004  # GET, SELECT and all other requests
S3_STANDARD_GB_MONTH_TIERS = (
    (50 * 1024, 0.023),
    (450 * 1024, 0.022),
    (math.inf, 0.021),
)

# CloudWatch Logs, Standard log class: data ingested.
LOGS_INGESTION_PRICE_PER_GB = 0.50

# ---------------------------------------------------------------------------
# The service's own constants.

DAYS_PER_MONTH = 30
SECONDS_PER_HOUR = 3600
BYTES_PER_KB = 1024
BYTES_PER_GB = 1024**3
S3_PUTS_PER_EVENT = 3
EVENTS_PER_LIST = 1000
S3_PREFIX_PUTS_PER_SECOND = 3500
EVENT_PREFIXES = 256
DEFAULT_TIME_INDEX_SHARDS = 16

# Memory sizes are the template's defaults (StorerMemorySize and so on).
DEFAULT_STORER_MEMORY_MB = 512
DEFAULT_RETRIEVER_MEMORY_MB = 1024
DEFAULT_AUTHORIZER_MEMORY_MB = 256

# Durations in milliseconds, measured by bench/storer_write.py and
# bench/retriever_fetch.py on the emulator with every S3 request delayed by
# 10 ms to model S3's latency, rounded up (the run docs/benchmarks.md
# records). The authorizer's is an estimate: a warm HS256 or RS256 check and
# the policy take a few milliseconds. Replace them with the Duration metric of
# the deployed functions.
DEFAULT_STORER_SINGLE_MS = 14.0
DEFAULT_STORER_BATCH_MS = 166.0
DEFAULT_RETRIEVER_CALL_MS = 45.0
DEFAULT_AUTHORIZER_MS = 5.0

# API Gateway caches the authorizer's policy per token for AuthorizerCacheTtlSeconds.
DEFAULT_AUTHORIZER_CACHE_SECONDS = 300
DEFAULT_ACTIVE_TOKENS = 10

# Log bytes. Per event: the storer's outcome line, 542 bytes measured by
# bench/storer_write.py. Per request: the storer's other lines (436 bytes
# measured), the API access log line of the template's format (about 600
# bytes) and Lambda's START, END and REPORT lines (about 350 bytes, estimated).
DEFAULT_LOG_BYTES_PER_EVENT = 550
DEFAULT_LOG_BYTES_PER_REQUEST = 1400

DEFAULT_BATCH_SIZE = 100
DEFAULT_READS_PER_CALL = 1.0
DEFAULT_RETENTION_DAYS = 365


@dataclass(frozen=True)
class Workload:
    """The inputs of an estimate. --help gives the unit of each."""

    calls_per_day: float
    events_per_call: float
    event_size_kb: float
    peak_multiplier: float
    business_hours: float
    batch_size: int = 1
    reads_per_call: float = DEFAULT_READS_PER_CALL
    retention_days: float = DEFAULT_RETENTION_DAYS
    time_index_shards: int = DEFAULT_TIME_INDEX_SHARDS
    storer_single_ms: float = DEFAULT_STORER_SINGLE_MS
    storer_batch_ms: float = DEFAULT_STORER_BATCH_MS
    retriever_call_ms: float = DEFAULT_RETRIEVER_CALL_MS
    authorizer_ms: float = DEFAULT_AUTHORIZER_MS
    storer_memory_mb: int = DEFAULT_STORER_MEMORY_MB
    retriever_memory_mb: int = DEFAULT_RETRIEVER_MEMORY_MB
    authorizer_memory_mb: int = DEFAULT_AUTHORIZER_MEMORY_MB
    active_tokens: int = DEFAULT_ACTIVE_TOKENS
    authorizer_cache_seconds: int = DEFAULT_AUTHORIZER_CACHE_SECONDS
    log_bytes_per_event: float = DEFAULT_LOG_BYTES_PER_EVENT
    log_bytes_per_request: float = DEFAULT_LOG_BYTES_PER_REQUEST


@dataclass(frozen=True)
class Estimate:
    """Rates, capacity, monthly volumes and monthly cost in US dollars of one workload."""

    events_per_month: float
    peak_events_per_second: float
    peak_post_requests_per_second: float
    storer_concurrency: int
    retriever_concurrency: int
    peak_puts_per_second_per_time_shard: float
    peak_puts_per_second_per_event_prefix: float
    time_index_shards_needed: int
    post_requests_per_month: float
    get_requests_per_month: float
    authorizer_invocations_per_month: float
    s3_puts_per_month: float
    s3_gets_per_month: float
    s3_lists_per_month: float
    storage_gb_added_per_month: float
    storage_gb_steady_state: float
    log_gb_per_month: float
    lambda_gb_seconds_per_month: float
    cost_lambda: float
    cost_api_gateway: float
    cost_s3_puts: float
    cost_s3_gets_and_lists: float
    cost_s3_storage: float
    cost_logs: float

    @property
    def cost_total(self) -> float:
        return (
            self.cost_lambda
            + self.cost_api_gateway
            + self.cost_s3_puts
            + self.cost_s3_gets_and_lists
            + self.cost_s3_storage
            + self.cost_logs
        )

    @property
    def cost_per_million_events(self) -> float:
        """Monthly cost over the month's stored events, per million events."""
        return self.cost_total / self.events_per_month * 1_000_000

    @property
    def puts_per_million_events(self) -> float:
        """The cost of the S3 PUTs of one million stored events."""
        return self.cost_s3_puts / self.events_per_month * 1_000_000

    @property
    def floor_per_million_events(self) -> float:
        """The PUT cost of one S3 object per event, per million events.

        No layout stores an event in S3 for less.
        """
        return 1_000_000 * S3_PUT_PRICE_PER_THOUSAND / 1000


def tiered_cost(quantity: float, tiers: Sequence[tuple[float, float]], unit: float = 1.0) -> float:
    """Price `quantity` through `tiers` of (tier size, price per `unit`), filling each in turn."""
    cost = 0.0
    remaining = quantity
    for size, price in tiers:
        in_tier = min(remaining, size)
        cost += in_tier / unit * price
        remaining -= in_tier
        if remaining <= 0:
            break
    return cost


def estimate(workload: Workload) -> Estimate:
    """Compute the Estimate of `workload`. Raise ValueError for an input out of range."""
    _check(workload)

    events_per_day = workload.calls_per_day * workload.events_per_call
    events_per_month = events_per_day * DAYS_PER_MONTH
    business_seconds = workload.business_hours * SECONDS_PER_HOUR
    peak_events_per_second = _peak_rate(events_per_day, workload)

    batched = workload.batch_size > 1
    storer_ms = workload.storer_batch_ms if batched else workload.storer_single_ms
    peak_posts_per_second = peak_events_per_second / workload.batch_size
    storer_concurrency = _concurrency(peak_posts_per_second, storer_ms)

    calls_per_month = workload.calls_per_day * DAYS_PER_MONTH
    reads_per_month = calls_per_month * workload.reads_per_call
    reads_per_day = workload.calls_per_day * workload.reads_per_call
    peak_reads_per_second = _peak_rate(reads_per_day, workload)
    retriever_concurrency = _concurrency(peak_reads_per_second, workload.retriever_call_ms)

    post_requests = events_per_month / workload.batch_size
    get_requests = reads_per_month
    authorizer_invocations = (
        workload.active_tokens
        * business_seconds
        / workload.authorizer_cache_seconds
        * DAYS_PER_MONTH
    )

    s3_puts = events_per_month * S3_PUTS_PER_EVENT
    s3_gets = reads_per_month * workload.events_per_call
    s3_lists = reads_per_month * math.ceil(workload.events_per_call / EVENTS_PER_LIST)

    event_bytes = workload.event_size_kb * BYTES_PER_KB
    storage_added = events_per_month * event_bytes / BYTES_PER_GB
    storage_steady = events_per_day * workload.retention_days * event_bytes / BYTES_PER_GB

    log_bytes = (
        events_per_month * workload.log_bytes_per_event
        + (post_requests + get_requests) * workload.log_bytes_per_request
    )
    log_gb = log_bytes / BYTES_PER_GB

    gb_seconds = (
        _gb_seconds(post_requests, storer_ms, workload.storer_memory_mb)
        + _gb_seconds(get_requests, workload.retriever_call_ms, workload.retriever_memory_mb)
        + _gb_seconds(authorizer_invocations, workload.authorizer_ms, workload.authorizer_memory_mb)
    )
    lambda_requests = post_requests + get_requests + authorizer_invocations
    cost_lambda = tiered_cost(gb_seconds, LAMBDA_ARM64_GB_SECOND_TIERS) + (
        lambda_requests / 1_000_000 * LAMBDA_PRICE_PER_MILLION_REQUESTS
    )

    return Estimate(
        events_per_month=events_per_month,
        peak_events_per_second=peak_events_per_second,
        peak_post_requests_per_second=peak_posts_per_second,
        storer_concurrency=storer_concurrency,
        retriever_concurrency=retriever_concurrency,
        peak_puts_per_second_per_time_shard=peak_events_per_second / workload.time_index_shards,
        peak_puts_per_second_per_event_prefix=peak_events_per_second / EVENT_PREFIXES,
        time_index_shards_needed=math.ceil(peak_events_per_second / S3_PREFIX_PUTS_PER_SECOND),
        post_requests_per_month=post_requests,
        get_requests_per_month=get_requests,
        authorizer_invocations_per_month=authorizer_invocations,
        s3_puts_per_month=s3_puts,
        s3_gets_per_month=s3_gets,
        s3_lists_per_month=s3_lists,
        storage_gb_added_per_month=storage_added,
        storage_gb_steady_state=storage_steady,
        log_gb_per_month=log_gb,
        lambda_gb_seconds_per_month=gb_seconds,
        cost_lambda=cost_lambda,
        cost_api_gateway=tiered_cost(
            post_requests + get_requests, API_GATEWAY_REST_TIERS, unit=1_000_000
        ),
        cost_s3_puts=s3_puts / 1000 * S3_PUT_PRICE_PER_THOUSAND,
        cost_s3_gets_and_lists=(
            s3_gets / 1000 * S3_GET_PRICE_PER_THOUSAND + s3_lists / 1000 * S3_PUT_PRICE_PER_THOUSAND
        ),
        cost_s3_storage=tiered_cost(storage_steady, S3_STANDARD_GB_MONTH_TIERS),
        cost_logs=log_gb * LOGS_INGESTION_PRICE_PER_GB,
    )


def _peak_rate(per_day: float, workload: Workload) -> float:
    """Return the peak per-second rate of `per_day` arrivals spread over the business hours."""
    business_seconds = workload.business_hours * SECONDS_PER_HOUR
    return per_day / business_seconds * workload.peak_multiplier


def _concurrency(requests_per_second: float, milliseconds: float) -> int:
    # Little's law: requests in flight = arrival rate x time in the system.
    return math.ceil(requests_per_second * milliseconds / 1000)


def _gb_seconds(invocations: float, milliseconds: float, memory_mb: int) -> float:
    # Lambda bills duration in whole milliseconds, rounded up.
    return invocations * math.ceil(milliseconds) / 1000 * memory_mb / 1024


def _check(workload: Workload) -> None:
    positive = {
        "--calls-per-day": workload.calls_per_day,
        "--events-per-call": workload.events_per_call,
        "--event-size-kb": workload.event_size_kb,
        "--batch-size": workload.batch_size,
        "--time-index-shards": workload.time_index_shards,
    }
    for option, value in positive.items():
        if value <= 0:
            raise ValueError(f"{option} is {value:g}, but it must be greater than 0")

    if not 0 < workload.business_hours <= 24:
        raise ValueError(
            f"--business-hours is {workload.business_hours:g}, "
            "but it must be greater than 0 and at most 24"
        )
    if workload.peak_multiplier < 1:
        raise ValueError(
            f"--peak-multiplier is {workload.peak_multiplier:g}, but the peak is at least the "
            "average, so it must be 1 or more"
        )

    not_negative = {
        "--reads-per-call": workload.reads_per_call,
        "--retention-days": workload.retention_days,
    }
    for option, value in not_negative.items():
        if value < 0:
            raise ValueError(f"{option} is {value:g}, but it must be 0 or more")


# ---------------------------------------------------------------------------
# Command line


# (flag, type, default or None for a required option, help text ending in the unit)
WORKLOAD_OPTIONS: tuple[tuple[str, type, float | None, str], ...] = (
    ("--calls-per-day", float, None, "calls per day (calls)"),
    ("--events-per-call", float, None, "events posted per call (events)"),
    ("--event-size-kb", float, None,
     "size of one stored event as canonical JSON (KiB, 1 KiB = 1,024 bytes)"),
    ("--peak-multiplier", float, None,
     "peak rate over the average rate of the business hours (ratio, 1 or more)"),
    ("--business-hours", float, None,
     "hours per day in which the calls arrive (hours, more than 0 and at most 24)"),
    ("--batch-size", int, DEFAULT_BATCH_SIZE,
     "events per POST of the batched estimate (events)"),
    ("--reads-per-call", float, DEFAULT_READS_PER_CALL,
     "GET /calls/{callId}/events requests per call (requests)"),
    ("--retention-days", float, DEFAULT_RETENTION_DAYS,
     "days events stay stored, the template's EventsExpirationDays (days)"),
    ("--active-tokens", int, DEFAULT_ACTIVE_TOKENS,
     "distinct bearer tokens in use at once, each checked by the authorizer once per "
     "cache period (tokens)"),
)
SERVICE_OPTIONS: tuple[tuple[str, type, float | None, str], ...] = (
    ("--time-index-shards", int, DEFAULT_TIME_INDEX_SHARDS,
     "the template's TimeIndexShards (shards)"),
    ("--storer-single-ms", float, DEFAULT_STORER_SINGLE_MS,
     "storer duration of a one-event POST (ms)"),
    ("--storer-batch-ms", float, DEFAULT_STORER_BATCH_MS,
     "storer duration of a POST of --batch-size events, as measured for 100 events (ms)"),
    ("--retriever-call-ms", float, DEFAULT_RETRIEVER_CALL_MS,
     "retriever duration of one call read (ms)"),
    ("--authorizer-ms", float, DEFAULT_AUTHORIZER_MS, "authorizer duration (ms)"),
    ("--storer-memory-mb", int, DEFAULT_STORER_MEMORY_MB, "storer memory (MB)"),
    ("--retriever-memory-mb", int, DEFAULT_RETRIEVER_MEMORY_MB, "retriever memory (MB)"),
    ("--authorizer-memory-mb", int, DEFAULT_AUTHORIZER_MEMORY_MB, "authorizer memory (MB)"),
    ("--log-bytes-per-event", float, DEFAULT_LOG_BYTES_PER_EVENT,
     "log bytes the storer writes per event (bytes)"),
    ("--log-bytes-per-request", float, DEFAULT_LOG_BYTES_PER_REQUEST,
     "log bytes per API request besides the per-event lines (bytes)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="capacity.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = (
        ("workload", WORKLOAD_OPTIONS),
        ("service (defaults: the template and docs/benchmarks.md)", SERVICE_OPTIONS),
    )
    for title, options in groups:
        group = parser.add_argument_group(title)
        for flag, kind, default, text in options:
            if default is None:
                group.add_argument(flag, type=kind, required=True, help=text)
            else:
                group.add_argument(
                    flag, type=kind, default=default, help=f"{text}, default {default:g}"
                )
    return parser


def workload_from_arguments(arguments: argparse.Namespace, batch_size: int) -> Workload:
    """Build the Workload of the parsed options, with `batch_size` in place of --batch-size."""
    names = {field.name for field in fields(Workload)}
    values = {name: value for name, value in vars(arguments).items() if name in names}
    values["batch_size"] = batch_size
    return Workload(**values)


REPORT_ROWS = (
    ("peak events per second", "events/s", "peak_events_per_second"),
    ("peak POST requests per second", "requests/s", "peak_post_requests_per_second"),
    ("storer concurrency at peak", "environments", "storer_concurrency"),
    ("retriever concurrency at peak", "environments", "retriever_concurrency"),
    ("peak PUTs per second per time shard", "PUT/s", "peak_puts_per_second_per_time_shard"),
    (f"peak PUTs per second per event prefix ({EVENT_PREFIXES})", "PUT/s",
     "peak_puts_per_second_per_event_prefix"),
    (f"time shards needed at {S3_PREFIX_PUTS_PER_SECOND:,} PUT/s per prefix", "shards",
     "time_index_shards_needed"),
    ("events stored per month", "events", "events_per_month"),
    ("API POST requests per month", "requests", "post_requests_per_month"),
    ("API GET requests per month", "requests", "get_requests_per_month"),
    ("S3 PUT requests per month", "requests", "s3_puts_per_month"),
    ("S3 GET requests per month", "requests", "s3_gets_per_month"),
    ("S3 LIST requests per month", "requests", "s3_lists_per_month"),
    ("S3 storage added per month", "GB", "storage_gb_added_per_month"),
    ("S3 storage at the retention period", "GB", "storage_gb_steady_state"),
    ("log data ingested per month", "GB", "log_gb_per_month"),
    ("Lambda compute per month", "GB-s", "lambda_gb_seconds_per_month"),
    ("cost: Lambda (arm64, duration and requests)", "USD/month", "cost_lambda"),
    ("cost: API Gateway REST requests", "USD/month", "cost_api_gateway"),
    (f"cost: S3 PUT requests ({S3_PUTS_PER_EVENT} per event)", "USD/month", "cost_s3_puts"),
    ("cost: S3 GET and LIST requests", "USD/month", "cost_s3_gets_and_lists"),
    ("cost: S3 Standard storage at the retention period", "USD/month", "cost_s3_storage"),
    ("cost: CloudWatch Logs ingestion", "USD/month", "cost_logs"),
    ("cost: total", "USD/month", "cost_total"),
    ("cost per million events stored", "USD", "cost_per_million_events"),
    (f"  of which the {S3_PUTS_PER_EVENT} S3 PUTs per event", "USD", "puts_per_million_events"),
    ("  floor: 1 S3 PUT per event (1 object per event)", "USD", "floor_per_million_events"),
)


# Columns: label, unit, the single-post estimate, the batched estimate.
REPORT_LINE = "{:<54} {:<13} {:>15} {:>17}"


def format_report(single: Estimate, batched: Estimate, batch_size: int) -> str:
    """Return the two estimates side by side as a plain-text table."""
    lines = [REPORT_LINE.format("", "unit", "single posts", f"batches of {batch_size}")]
    for label, unit, attribute in REPORT_ROWS:
        first = _format(getattr(single, attribute))
        second = _format(getattr(batched, attribute))
        lines.append(REPORT_LINE.format(label, unit, first, second))
    lines.append("")
    lines.append(
        f"Prices: us-east-1 list prices as known on {PRICES_RECORDED_ON}, without free tier, "
        "Savings Plans or taxes; check them against the AWS pricing pages."
    )
    return "\n".join(lines)


def _format(value: float) -> str:
    if float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        single = estimate(workload_from_arguments(arguments, batch_size=1))
        batched = estimate(workload_from_arguments(arguments, batch_size=arguments.batch_size))
    except ValueError as error:
        parser.error(str(error))
    print(format_report(single, batched, arguments.batch_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
