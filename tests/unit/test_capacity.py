"""The capacity and cost estimate (tools/capacity.py), against values worked out by hand.

The workload of most tests: 40,000 calls a day of 25 events of 0.5 KiB, all in
10 business hours with a peak of 3 times the average, so 1,000,000 events a
day and 30,000,000 in a 30-day month. The expected values below are written
as the arithmetic that derives them, from the prices the module states.
"""

from __future__ import annotations

import pytest

from tools import capacity
from tools.capacity import Workload, estimate, tiered_cost

GB = 1024**3


def workload(**overrides: object) -> Workload:
    values: dict[str, object] = {
        "calls_per_day": 40_000,
        "events_per_call": 25,
        "event_size_kb": 0.5,
        "peak_multiplier": 3,
        "business_hours": 10,
        "batch_size": 1,
        "reads_per_call": 1,
        "retention_days": 365,
        "time_index_shards": 16,
        "storer_single_ms": 30,
        "storer_batch_ms": 900,
        "retriever_call_ms": 60,
        "authorizer_ms": 5,
        "storer_memory_mb": 512,
        "retriever_memory_mb": 1024,
        "authorizer_memory_mb": 256,
        "active_tokens": 10,
        "authorizer_cache_seconds": 300,
        "log_bytes_per_event": 500,
        "log_bytes_per_request": 1500,
    }
    values.update(overrides)
    return Workload(**values)  # type: ignore[arg-type]


# -- rates and capacity --------------------------------------------------------


def test_peak_rate_spreads_day_over_business_hours():
    result = estimate(workload())

    # 1,000,000 events over 36,000 seconds, times 3.
    assert result.peak_events_per_second == pytest.approx(1_000_000 / 36_000 * 3)


def test_events_per_month_counts_thirty_days():
    assert estimate(workload()).events_per_month == 30_000_000


def test_single_post_concurrency_uses_single_duration():
    # 83.33 requests/s x 0.030 s = 2.5 environments, rounded up.
    assert estimate(workload()).storer_concurrency == 3


def test_batched_concurrency_uses_batch_duration():
    # 0.8333 requests/s x 0.9 s = 0.75 environments, rounded up.
    assert estimate(workload(batch_size=100)).storer_concurrency == 1


def test_retriever_concurrency_follows_reads():
    # 40,000 reads over 36,000 s, times 3, is 3.333 reads/s; x 0.06 s = 0.2.
    assert estimate(workload()).retriever_concurrency == 1


def test_time_shard_rate_divides_peak_by_shards():
    result = estimate(workload())

    assert result.peak_puts_per_second_per_time_shard == pytest.approx(83.3333333 / 16)
    assert result.peak_puts_per_second_per_event_prefix == pytest.approx(83.3333333 / 256)


def test_time_shards_needed_at_35000_events_per_second():
    # 35,000 events/s at the peak: 3,500 PUT/s per prefix needs 10 time shards.
    busy = workload(calls_per_day=35_000 * 36_000 / 25 / 3)

    result = estimate(busy)

    assert result.peak_events_per_second == pytest.approx(35_000)
    assert result.time_index_shards_needed == 10


# -- monthly volumes -----------------------------------------------------------


def test_each_event_costs_three_puts():
    result = estimate(workload())

    assert result.s3_puts_per_month == 90_000_000
    assert result.cost_s3_puts == pytest.approx(90_000 * 0.005)


def test_call_reads_cost_gets_and_one_list():
    result = estimate(workload())

    # 1,200,000 call reads a month: 25 GETs and 1 LIST each.
    assert result.s3_gets_per_month == 30_000_000
    assert result.s3_lists_per_month == 1_200_000
    assert result.cost_s3_gets_and_lists == pytest.approx(30_000 * 0.0004 + 1_200 * 0.005)


def test_call_of_2500_events_needs_three_lists():
    result = estimate(workload(events_per_call=2500, calls_per_day=400))

    assert result.s3_lists_per_month == 400 * 30 * 3


def test_storage_counts_event_bytes_over_retention():
    result = estimate(workload())

    assert result.storage_gb_added_per_month == pytest.approx(30_000_000 * 512 / GB)
    assert result.storage_gb_steady_state == pytest.approx(1_000_000 * 365 * 512 / GB)
    assert result.cost_s3_storage == pytest.approx(1_000_000 * 365 * 512 / GB * 0.023)


def test_log_volume_of_single_posts():
    result = estimate(workload())

    expected_bytes = 30_000_000 * 500 + (30_000_000 + 1_200_000) * 1500
    assert result.log_gb_per_month == pytest.approx(expected_bytes / GB)
    assert result.cost_logs == pytest.approx(expected_bytes / GB * 0.50)


def test_log_volume_of_batches():
    result = estimate(workload(batch_size=100))

    expected_bytes = 30_000_000 * 500 + (300_000 + 1_200_000) * 1500
    assert result.log_gb_per_month == pytest.approx(expected_bytes / GB)


def test_authorizer_runs_once_per_token_per_cache_period():
    # 10 tokens x 36,000 s / 300 s x 30 days.
    assert estimate(workload()).authorizer_invocations_per_month == 36_000


# -- cost ------------------------------------------------------------------------


def test_lambda_cost_of_single_posts():
    result = estimate(workload())

    gb_seconds = 30_000_000 * 0.030 * 0.5 + 1_200_000 * 0.060 * 1.0 + 36_000 * 0.005 * 0.25
    requests = 30_000_000 + 1_200_000 + 36_000
    assert result.lambda_gb_seconds_per_month == pytest.approx(522_045)
    assert result.cost_lambda == pytest.approx(gb_seconds * 0.0000133334 + requests / 1e6 * 0.20)


def test_lambda_cost_of_batches():
    result = estimate(workload(batch_size=100))

    gb_seconds = 300_000 * 0.900 * 0.5 + 1_200_000 * 0.060 * 1.0 + 36_000 * 0.005 * 0.25
    requests = 300_000 + 1_200_000 + 36_000
    assert result.lambda_gb_seconds_per_month == pytest.approx(207_045)
    assert result.cost_lambda == pytest.approx(gb_seconds * 0.0000133334 + requests / 1e6 * 0.20)


def test_lambda_bills_whole_milliseconds():
    result = estimate(workload(storer_single_ms=29.2, reads_per_call=0, active_tokens=0))

    # 29.2 ms is billed as 30 ms.
    assert result.lambda_gb_seconds_per_month == pytest.approx(30_000_000 * 0.030 * 0.5)


def test_api_gateway_cost_counts_posts_and_gets():
    assert estimate(workload()).cost_api_gateway == pytest.approx(31.2 * 3.50)
    assert estimate(workload(batch_size=100)).cost_api_gateway == pytest.approx(1.5 * 3.50)


def test_total_of_single_posts():
    result = estimate(workload())

    lambda_cost = 522_045 * 0.0000133334 + 31_236_000 / 1e6 * 0.20
    storage = 1_000_000 * 365 * 512 / GB * 0.023
    logs = (30_000_000 * 500 + 31_200_000 * 1500) / GB * 0.50
    expected = lambda_cost + 31.2 * 3.50 + 450 + 18 + storage + logs
    assert result.cost_total == pytest.approx(expected)
    assert result.cost_total == pytest.approx(623.19, abs=0.01)


def test_total_of_batches():
    result = estimate(workload(batch_size=100))

    lambda_cost = 207_045 * 0.0000133334 + 1_536_000 / 1e6 * 0.20
    storage = 1_000_000 * 365 * 512 / GB * 0.023
    logs = (30_000_000 * 500 + 1_500_000 * 1500) / GB * 0.50
    expected = lambda_cost + 1.5 * 3.50 + 450 + 18 + storage + logs
    assert result.cost_total == pytest.approx(expected)
    assert result.cost_total == pytest.approx(488.35, abs=0.01)


def test_floor_is_one_put_per_event():
    assert estimate(workload()).floor_per_million_events == pytest.approx(5.00)


def test_puts_per_million_events():
    assert estimate(workload()).puts_per_million_events == pytest.approx(15.00)


def test_cost_per_million_events_divides_total():
    result = estimate(workload())

    assert result.cost_per_million_events == pytest.approx(result.cost_total / 30)


def test_tiered_cost_within_first_tier():
    cost = tiered_cost(100_000_000, capacity.API_GATEWAY_REST_TIERS, 1_000_000)

    assert cost == pytest.approx(350)


def test_tiered_cost_crosses_into_second_tier():
    cost = tiered_cost(400_000_000, capacity.API_GATEWAY_REST_TIERS, 1_000_000)

    assert cost == pytest.approx(333 * 3.50 + 67 * 2.80)


def test_tiered_cost_of_storage_past_50_tb():
    cost = tiered_cost(60 * 1024, capacity.S3_STANDARD_GB_MONTH_TIERS)

    assert cost == pytest.approx(50 * 1024 * 0.023 + 10 * 1024 * 0.022)


# -- input checks and the command line -----------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("calls_per_day", 0),
        ("events_per_call", -1),
        ("event_size_kb", 0),
        ("business_hours", 0),
        ("business_hours", 25),
        ("peak_multiplier", 0.5),
        ("batch_size", 0),
        ("time_index_shards", 0),
        ("reads_per_call", -1),
        ("retention_days", -1),
    ],
)
def test_out_of_range_input_is_rejected(field, value):
    with pytest.raises(ValueError):
        estimate(workload(**{field: value}))


def test_error_names_option_and_value():
    with pytest.raises(ValueError) as error_info:
        estimate(workload(retention_days=-5))

    assert str(error_info.value) == "--retention-days is -5, but it must be 0 or more"


def test_every_option_reaches_workload():
    values = {
        "calls_per_day": 1, "events_per_call": 2, "event_size_kb": 3, "peak_multiplier": 4,
        "business_hours": 5, "reads_per_call": 7, "retention_days": 8, "active_tokens": 9,
        "time_index_shards": 10, "storer_single_ms": 11, "storer_batch_ms": 12,
        "retriever_call_ms": 13, "authorizer_ms": 14, "storer_memory_mb": 15,
        "retriever_memory_mb": 16, "authorizer_memory_mb": 17, "log_bytes_per_event": 18,
        "log_bytes_per_request": 19,
    }
    arguments = ["--batch-size", "6"]
    for name, value in values.items():
        arguments += ["--" + name.replace("_", "-"), str(value)]

    parsed = capacity.build_parser().parse_args(arguments)
    result = capacity.workload_from_arguments(parsed, batch_size=20)

    assert result == Workload(**values, batch_size=20)  # type: ignore[arg-type]


def test_command_prints_both_estimates(capsys):
    arguments = [
        "--calls-per-day", "40000", "--events-per-call", "25", "--event-size-kb", "0.5",
        "--peak-multiplier", "3", "--business-hours", "10",
    ]

    assert capacity.main(arguments) == 0

    output = capsys.readouterr().out
    assert "single posts" in output
    assert "batches of 100" in output
    assert capacity.PRICES_RECORDED_ON in output


def test_command_rejects_zero_business_hours(capsys):
    arguments = [
        "--calls-per-day", "40000", "--events-per-call", "25", "--event-size-kb", "0.5",
        "--peak-multiplier", "3", "--business-hours", "0",
    ]

    with pytest.raises(SystemExit) as exit_info:
        capacity.main(arguments)

    assert exit_info.value.code == 2
    assert "--business-hours" in capsys.readouterr().err


def test_help_names_units(capsys):
    with pytest.raises(SystemExit):
        capacity.main(["--help"])

    help_text = capsys.readouterr().out
    for unit in ("(calls)", "(KiB", "(hours", "(ratio", "(ms", "(MB"):
        assert unit in help_text
