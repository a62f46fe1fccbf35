"""The offline Logs Insights evaluator (tools/insights.py): fields, commands and rejected syntax."""

from __future__ import annotations

import json

import pytest

from tools.insights import (
    LogEvent,
    UnsupportedQueryError,
    discover_fields,
    format_timestamp,
    run_query,
)

# 2026-03-02 23:58:10.123 UTC
BASE_MS = 1772495890123
GROUP = "/aws/lambda/callflow-event-storer-test"
REQUEST_ID = "8f507cfc-1f2e-4697-b07a-ac58fc914c95"
REPORT_LINE = (
    f"REPORT RequestId: {REQUEST_ID}\tDuration: 15.74 ms\tBilled Duration: 16 ms\t"
    "Memory Size: 512 MB\tMax Memory Used: 97 MB\tInit Duration: 630.49 ms\t\n"
    "XRAY TraceId: 1-5e34a614-10bd4e6cf1fb44f07bc535a1\t"
    "SegmentId: 07f5c2a52d1f6f85\tSampled: true\t\n"
)


def json_event(offset_ms: int = 0, group: str = GROUP, **fields: object) -> LogEvent:
    return LogEvent(BASE_MS + offset_ms, json.dumps(fields), group)


def text_event(message: str, offset_ms: int = 0, group: str = GROUP) -> LogEvent:
    return LogEvent(BASE_MS + offset_ms, message, group)


# -- discovered fields -----------------------------------------------------------


def test_timestamp_has_insights_format():
    assert format_timestamp(BASE_MS) == "2026-03-02 23:58:10.123"
    assert format_timestamp(BASE_MS - 123) == "2026-03-02 23:58:10.000"


def test_system_fields_come_from_event():
    fields = discover_fields(LogEvent(BASE_MS, "plain text", GROUP, "2026/03/02/[1]abc"))

    assert fields["@timestamp"] == "2026-03-02 23:58:10.123"
    assert fields["@message"] == "plain text"
    assert fields["@log"] == GROUP
    assert fields["@logStream"] == "2026/03/02/[1]abc"


def test_json_fields_are_flattened_with_dots():
    metrics = {"CloudWatchMetrics": {"Namespace": "Callflow"}}
    event = json_event(level="INFO", message="Event stored", _aws=metrics)

    fields = discover_fields(event)

    assert fields["level"] == "INFO"
    assert fields["message"] == "Event stored"
    assert fields["_aws.CloudWatchMetrics.Namespace"] == "Callflow"


def test_json_null_and_arrays_are_not_fields():
    fields = discover_fields(json_event(error=None, details=[1, 2]))

    assert "error" not in fields
    assert "details" not in fields


def test_json_with_trailing_newline_is_parsed():
    fields = discover_fields(text_event('{"level": "WARNING"}\n'))

    assert fields["level"] == "WARNING"


def test_non_json_text_has_system_fields_only():
    for message in ("{not json", "[1, 2]", "Event stored"):
        fields = discover_fields(text_event(message))

        assert set(fields) == {"@timestamp", "@message", "@log", "@logStream"}, message


def test_report_line_fields():
    fields = discover_fields(text_event(REPORT_LINE))

    assert fields["@type"] == "REPORT"
    assert fields["@requestId"] == REQUEST_ID
    assert fields["@duration"] == 15.74
    assert fields["@billedDuration"] == 16
    assert fields["@initDuration"] == 630.49
    assert fields["@memorySize"] == 512_000_000
    assert fields["@maxMemoryUsed"] == 97_000_000
    assert fields["@xrayTraceId"] == "1-5e34a614-10bd4e6cf1fb44f07bc535a1"
    assert fields["@xraySegmentId"] == "07f5c2a52d1f6f85"


def test_warm_report_has_no_init_duration():
    line = (
        f"REPORT RequestId: {REQUEST_ID}\tDuration: 3 ms\tBilled Duration: 3 ms\t"
        "Memory Size: 256 MB\tMax Memory Used: 94 MB"
    )

    fields = discover_fields(text_event(line))

    assert "@initDuration" not in fields
    assert fields["@duration"] == 3


def test_report_fields_accept_spaces_between_fields():
    line = (
        f"REPORT RequestId: {REQUEST_ID}  Duration: 15.74 ms  Billed Duration: 16 ms "
        "Memory Size: 128 MB Max Memory Used: 56 MB  Init Duration: 130.49 ms"
    )

    fields = discover_fields(text_event(line))

    assert fields["@duration"] == 15.74
    assert fields["@initDuration"] == 130.49
    assert fields["@maxMemoryUsed"] == 56_000_000


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (f"START RequestId: {REQUEST_ID} Version: 7", "START"),
        (f"END RequestId: {REQUEST_ID}", "END"),
    ],
)
def test_start_end_lines_have_type(line, kind):
    fields = discover_fields(text_event(line))

    assert fields["@type"] == kind
    assert fields["@requestId"] == REQUEST_ID
    assert "@duration" not in fields


# -- fields, filter, sort, limit ---------------------------------------------------


def test_default_columns_are_timestamp_and_message():
    rows = run_query('filter level = "ERROR"', [json_event(level="ERROR", code="X")])

    assert rows == [
        {"@timestamp": "2026-03-02 23:58:10.123", "@message": '{"level": "ERROR", "code": "X"}'}
    ]


def test_fields_selects_present_columns():
    rows = run_query("fields level, code, @log", [json_event(level="ERROR")])

    assert rows == [{"level": "ERROR", "@log": GROUP}]


def test_filter_reads_unselected_fields():
    events = [json_event(level="ERROR", code="A"), json_event(level="INFO", code="B")]

    rows = run_query('fields code | filter level = "ERROR"', events)

    assert rows == [{"code": "A"}]


def test_equals_compares_numbers_and_numeric_strings():
    events = [json_event(status=200), json_event(status="200"), json_event(status=404)]

    assert len(run_query("filter status = 200", events)) == 2
    assert len(run_query('filter status = "200"', events)) == 2


def test_not_equal_is_false_for_absent_field():
    events = [json_event(level="INFO"), json_event(level="ERROR"), json_event(code="X")]

    rows = run_query('fields level | filter level != "INFO"', events)

    assert rows == [{"level": "ERROR"}]


def test_in_matches_any_listed_value():
    messages = ("Event stored", "Event conflict", "Query completed")
    events = [json_event(message=text) for text in messages]

    query = 'fields message | filter message in ["Event stored", "Event conflict"]'
    rows = run_query(query, events)

    assert [row["message"] for row in rows] == ["Event stored", "Event conflict"]


def test_like_regex_searches_anywhere_in_value():
    events = [text_event("x Task timed out after 15.02 seconds"), text_event("Task finished")]

    rows = run_query(r"filter @message like /timed out after \d+/", events)

    assert len(rows) == 1


def test_not_like_keeps_lines_that_do_not_match():
    events = [text_event("[ERROR] Exception: Unauthorized"), text_event("[ERROR] KeyError: 'x'")]

    rows = run_query(r"filter @message not like /Exception: Unauthorized/", events)

    assert [row["@message"] for row in rows] == ["[ERROR] KeyError: 'x'"]


def test_like_regex_is_case_sensitive():
    events = [text_event("[ERROR] Exception"), text_event("[error] exception")]

    assert len(run_query(r"filter @message like /\[ERROR\]/", events)) == 1
    assert len(run_query(r"filter @message like /(?i)\[ERROR\]/", events)) == 2


def test_like_regex_with_escaped_slash():
    events = [text_event("path a/b"), text_event("path a-b")]

    rows = run_query(r"filter @message like /a\/b/", events)

    assert [row["@message"] for row in rows] == ["path a/b"]


def test_like_string_matches_substring():
    events = [text_event(REPORT_LINE), text_event("START")]

    rows = run_query('filter @message like "Init Duration"', events)

    assert len(rows) == 1


def test_and_binds_more_tightly_than_or():
    events = [
        json_event(a=1, b=0, c=0),
        json_event(a=0, b=1, c=1),
        json_event(a=0, b=1, c=0),
    ]

    rows = run_query("fields a, b, c | filter a = 1 or b = 1 and c = 1", events)

    assert rows == [{"a": 1, "b": 0, "c": 0}, {"a": 0, "b": 1, "c": 1}]


def test_parentheses_group_conditions():
    events = [
        json_event(a=1, b=0, c=0),
        json_event(a=0, b=1, c=1),
        json_event(a=1, b=0, c=1),
    ]

    rows = run_query("fields a, b, c | filter (a = 1 or b = 1) and c = 1", events)

    assert rows == [{"a": 0, "b": 1, "c": 1}, {"a": 1, "b": 0, "c": 1}]


def test_sort_desc_and_limit():
    events = [json_event(offset, n=offset) for offset in (0, 2000, 1000)]

    rows = run_query("fields n | sort @timestamp desc | limit 2", events)

    assert rows == [{"n": 2000}, {"n": 1000}]


def test_sort_puts_numbers_after_other_values():
    events = [json_event(v=value) for value in (10, "b2", 9, "b10", "a")]

    rows = run_query("fields v | sort v asc", events)

    assert [row["v"] for row in rows] == ["a", "b2", "b10", 9, 10]


def test_sort_keeps_rows_without_field_last():
    events = [json_event(v=1), json_event(w=5), json_event(v=3)]

    ascending = run_query("fields v, w | sort v asc", events)
    descending = run_query("fields v, w | sort v desc", events)

    assert ascending == [{"v": 1}, {"v": 3}, {"w": 5}]
    assert descending == [{"v": 3}, {"v": 1}, {"w": 5}]


# -- stats -------------------------------------------------------------------------


def test_stats_aggregates_by_field():
    events = [
        json_event(message="Event stored", eventSize=100, processingTimeMs=4.0),
        json_event(message="Event stored", eventSize=300, processingTimeMs=8.0),
        json_event(message="Event conflict", eventSize=50, processingTimeMs=2.5),
    ]

    rows = run_query(
        "stats count(*) as events, sum(eventSize) as bytes, avg(processingTimeMs) as avgMs, "
        "max(processingTimeMs) as maxMs by message",
        events,
    )

    assert rows == [
        {"message": "Event stored", "events": 2, "bytes": 400, "avgMs": 6.0, "maxMs": 8.0},
        {"message": "Event conflict", "events": 1, "bytes": 50, "avgMs": 2.5, "maxMs": 2.5},
    ]


def test_stats_without_as_names_columns_by_expression():
    rows = run_query("stats count(*), max(@maxMemoryUsed / 1000 / 1000)", [text_event(REPORT_LINE)])

    assert rows == [{"count(*)": 1, "max(@maxMemoryUsed / 1000 / 1000)": 97.0}]


def test_stats_arithmetic_follows_precedence():
    rows = run_query("stats max(a + b * 2) as total", [json_event(a=1, b=3)])

    assert rows == [{"total": 7}]


def test_stats_skips_values_that_are_not_numbers():
    events = [json_event(latency="-"), json_event(latency="41"), json_event(latency=19)]

    rows = run_query("stats count(*) as n, avg(latency) as avgMs", events)

    assert rows == [{"n": 3, "avgMs": 30.0}]


def test_stats_reads_negative_numeric_strings():
    events = [json_event(delta="-5"), json_event(delta="7"), json_event(delta="--5")]

    rows = run_query("stats sum(delta) as total, count(*) as n", events)

    assert rows == [{"total": 2, "n": 3}]


def test_pct_uses_nearest_rank():
    events = [json_event(ms=value) for value in (5, 1, 4, 2, 3, 10, 9, 8, 7, 6)]

    query = "stats pct(ms, 50) as p50, pct(ms, 90) as p90, pct(ms, 99) as p99, pct(ms, 0) as p0"
    rows = run_query(query, events)

    assert rows == [{"p50": 5, "p90": 9, "p99": 10, "p0": 1}]


def test_stats_by_bin_rounds_timestamp_down():
    events = [
        json_event(-11 * 60_000, level="ERROR"),  # 23:47:10
        json_event(0, level="ERROR"),  # 23:58:10
        json_event(2 * 60_000, level="ERROR"),  # 00:00:10 the next day
    ]

    rows = run_query("stats count(*) as n by bin(15m)", events)

    assert rows == [
        {"bin(15m)": "2026-03-02 23:45:00.000", "n": 2},
        {"bin(15m)": "2026-03-03 00:00:00.000", "n": 1},
    ]


def test_stats_group_without_field_leaves_it_out():
    events = [json_event(failureReason="X"), json_event(other=1)]

    rows = run_query("stats count(*) as n by failureReason", events)

    assert rows == [{"failureReason": "X", "n": 1}, {"n": 1}]


def test_sort_after_stats_uses_column_name():
    events = [json_event(m="a"), json_event(m="b"), json_event(m="b")]

    rows = run_query("stats count(*) as n by m | sort n desc", events)

    assert [row["m"] for row in rows] == ["b", "a"]


def test_filter_before_stats_limits_rows():
    events = [json_event(authResult="DENY", r="A"), json_event(authResult="ALLOW", r="A")]

    rows = run_query('filter authResult = "DENY" | stats count(*) as failures by r', events)

    assert rows == [{"r": "A", "failures": 1}]


# -- rejected syntax ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ('parse @message "* *" as a, b', "'parse'"),
        ("filter not level = 1", "not operator"),
        ("filter level not in [1]", "not other than in `not like`"),
        ("filter level == 1", "'=='"),
        ("filter duration > 5", "'>'"),
        ("filter ispresent(level)", "ispresent()"),
        ("filter @message like /x/i", "flags after /regex/"),
        ("filter @message like /x", "not closed"),
        ('filter level = "x', "not closed"),
        ("filter @message like /[/", "invalid regex"),
        ("filter level", "expected =, !=, like or in"),
        ("stats min(a)", "'min'"),
        ("stats count(a)", "expected '*'"),
        ("stats pct(a, 150)", "percentile from 0 to 100"),
        ("stats count(*) by bin(1w)", "bin() needs a period"),
        ("stats count(*) by bin(5m) as period", "name for a group"),
        ("stats count(*) by strlen(a)", "not a field or bin()"),
        ("stats count(*) | stats count(*)", "second stats"),
        ("stats count(*) as n | fields n", "fields command after stats"),
        ("fields a | fields b", "second fields"),
        ("fields a as b", "unexpected 'as'"),
        ("fields `a b`", "unexpected character"),
        ("sort @timestamp", "asc or desc"),
        ("sort by n desc", "expected a field name"),
        ("limit 0", "at least 1"),
        ("limit 2.5", "at least 1"),
        ("fields a |", "empty command"),
        ("fields a # comment", "unexpected character"),
    ],
)
def test_unsupported_syntax_is_rejected(query, named):
    with pytest.raises(UnsupportedQueryError) as raised:
        run_query(query, [])

    assert named in str(raised.value)


def test_rejection_names_position():
    with pytest.raises(UnsupportedQueryError, match="at character 16: the command 'dedup'"):
        run_query("filter a = 1 | dedup a", [])
