"""Evaluate a CloudWatch Logs Insights query over log events, offline.

The local emulator (MiniStack 1.5.33) runs only `fields`, `sort` and simple
`filter` stages of a Logs Insights query and skips `stats`. This module
evaluates the subset of the query language that the saved queries in
template.yaml use. Tests run those queries with it over the lines the
functions wrote in the emulator, and over lines built in the exact formats
that Lambda and API Gateway write in AWS.

Commands, separated by `|`:

- `fields a, b.c, @d`: the fields each result row contains. Other fields stay
  available to later commands. Without `fields` and `stats`, rows contain
  @timestamp and @message.
- `filter` with `=`, `!=`, `in [...]`, `like /regex/` (a search, so it matches
  anywhere in the value), `like "text"` (a substring), `not like`, `and`, `or` (which
  binds less tightly than `and`) and parentheses.
- `stats` with `count(*)`, `sum(x)`, `avg(x)`, `max(x)` and `pct(x, n)`, each
  optionally followed by `as name`, then optionally `by` fields and
  `bin(<n><unit>)` with the unit ms, s, m, h or d. `x` is a field or an
  arithmetic expression of fields and numbers with + - * /. Without `as`, a
  column is named by its expression, as in `count(*)`.
- `sort <field> asc|desc`, in the natural order that the Logs Insights `sort`
  documentation describes: values that are numbers come after all other
  values, and digit runs inside other values compare by length, then value
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/CWL_QuerySyntax-Sort.html).
- `limit <n>`.

Fields of each event, as Logs Insights discovers them (see
https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/CWL_AnalyzeLogData-discoverable-fields.html):

- @timestamp (UTC, "2026-03-02 23:58:10.123"), @message, @log (the
  `log_group` given, which AWS shows as "account-id:log-group-name") and
  @logStream.
- Lambda platform lines: @type (START, END or REPORT) and @requestId. REPORT
  lines add @duration, @billedDuration and @initDuration in ms, @memorySize
  and @maxMemoryUsed in bytes (the MB value times 1,000,000), and
  @xrayTraceId and @xraySegmentId when the function is traced.
- A message that is one JSON object: each key, with nested objects flattened
  into dotted names (`a.b.c`).

Every other construct raises UnsupportedQueryError, which names it and its
position. A saved query edited beyond this subset therefore fails its test
instead of being half-evaluated.

    from tools.insights import LogEvent, run_query
    events = [LogEvent(timestamp_ms=1772495890123, message=line, log_group=group)]
    rows = run_query('filter level = "ERROR" | stats count(*) as errors by @log', events)

Result values keep their JSON types (the Logs Insights API returns every value
as a string), and a row leaves out the fields that have no value.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, TypeVar, Union

# Logs Insights shows @timestamp in UTC with milliseconds.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_RESULT_FIELDS = ("@timestamp", "@message")
# NOTE: AWS documents no unit for @memorySize and @maxMemoryUsed. 1,000,000
# bytes per MB follows the AWS Lambda Operator Guide's sample queries, which
# divide both by 1000 twice to get MB.
BYTES_PER_MEGABYTE = 1_000_000
BIN_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
AGGREGATE_FUNCTIONS = ("count", "sum", "avg", "max", "pct")
KEYWORDS = frozenset({"and", "or", "not", "like", "in", "as", "by", "asc", "desc"})
COMMANDS = ("fields", "filter", "stats", "sort", "limit")

_NAME = re.compile(r"@?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_DURATION = re.compile(r"\d+[A-Za-z]+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SIGNED_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_OPERATORS = ("!=", "=", "(", ")", "[", "]", ",", "*", "/", "+", "-", "|")

# Lambda platform lines. REPORT fields are separated by tabs in the stored
# message, and AWS documentation pages render them as spaces, so any
# whitespace is accepted.
_PLATFORM_LINE = re.compile(r"^(?P<type>START|END|REPORT) RequestId: (?P<request_id>\S+)")
_DECIMAL = r"(\d+(?:\.\d+)?)"
# Each numeric REPORT field: its pattern, and the factor from the line's unit to the
# field's unit (durations stay in ms, memory goes from MB to bytes).
_REPORT_NUMBERS = {
    "@duration": (re.compile(r"RequestId: \S+\s+Duration: " + _DECIMAL + " ms"), 1),
    "@billedDuration": (re.compile(r"\bBilled Duration: " + _DECIMAL + " ms"), 1),
    "@initDuration": (re.compile(r"\bInit Duration: " + _DECIMAL + " ms"), 1),
    "@memorySize": (re.compile(r"\bMemory Size: (\d+) MB"), BYTES_PER_MEGABYTE),
    "@maxMemoryUsed": (re.compile(r"\bMax Memory Used: (\d+) MB"), BYTES_PER_MEGABYTE),
}
_REPORT_XRAY = re.compile(r"\bXRAY TraceId: (\S+)\s+SegmentId: (\S+)")

_Item = TypeVar("_Item")


class UnsupportedQueryError(ValueError):
    """A query uses syntax outside the evaluated subset, or syntax that is not valid."""


@dataclass(frozen=True)
class LogEvent:
    """One CloudWatch Logs event, as filter_log_events returns it, and its log group."""

    timestamp_ms: int
    message: str
    log_group: str = ""
    log_stream: str = ""


# -- query syntax tree ---------------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str


@dataclass(frozen=True)
class Literal:
    value: str | int | float


@dataclass(frozen=True)
class Arithmetic:
    operator: str
    left: Expression
    right: Expression


Expression = Union[Field, Literal, Arithmetic]


@dataclass(frozen=True)
class Comparison:
    operator: str  # "=" or "!="
    left: Expression
    right: Expression


@dataclass(frozen=True)
class Like:
    operand: Expression
    pattern: re.Pattern[str] | None  # from /regex/
    text: str | None  # from "text"
    negated: bool = False  # from `not like`


@dataclass(frozen=True)
class In:
    operand: Expression
    values: tuple[str | int | float, ...]


@dataclass(frozen=True)
class Junction:
    operator: str  # "and" or "or"
    parts: tuple[Condition, ...]


Condition = Union[Comparison, Like, In, Junction]


@dataclass(frozen=True)
class Aggregate:
    function: str
    argument: Expression | None  # None for count(*)
    percent: float | None  # pct only
    name: str


@dataclass(frozen=True)
class TimeBin:
    period_ms: int
    name: str


@dataclass(frozen=True)
class FieldsCommand:
    names: tuple[str, ...]


@dataclass(frozen=True)
class FilterCommand:
    condition: Condition


@dataclass(frozen=True)
class StatsCommand:
    aggregates: tuple[Aggregate, ...]
    groups: tuple[Field | TimeBin, ...]


@dataclass(frozen=True)
class SortCommand:
    name: str
    descending: bool


@dataclass(frozen=True)
class LimitCommand:
    count: int


Command = Union[FieldsCommand, FilterCommand, StatsCommand, SortCommand, LimitCommand]


# -- tokens --------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "number", "duration", "string", "regex", "operator" or "end"
    text: str  # the decoded value of a string or regex, else the source text
    position: int

    def is_keyword(self, word: str) -> bool:
        return self.kind == "name" and self.text.lower() == word

    def is_operator(self, *operators: str) -> bool:
        return self.kind == "operator" and self.text in operators


def _unsupported(position: int, detail: str) -> UnsupportedQueryError:
    """Return the error for `detail` at `position` (0-based), which the message counts from 1."""
    return UnsupportedQueryError(
        f"Unsupported query syntax at character {position + 1}: {detail}. "
        "tools/insights.py evaluates only the subset its module docstring lists. "
        "Extend it, or run the query in CloudWatch Logs Insights."
    )


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    while index < len(query):
        char = query[index]
        if char.isspace():
            index += 1
            continue

        if char in "\"'":
            text, end = _read_quoted(query, index)
            tokens.append(_Token("string", text, index))
            index = end
            continue

        # A slash right after `like` opens a regex, anywhere else it divides.
        if char == "/" and tokens and tokens[-1].is_keyword("like"):
            pattern, end = _read_regex(query, index)
            tokens.append(_Token("regex", pattern, index))
            index = end
            continue

        for pattern, kind in ((_DURATION, "duration"), (_NUMBER, "number"), (_NAME, "name")):
            match = pattern.match(query, index)
            if match:
                tokens.append(_Token(kind, match.group(), index))
                index = match.end()
                break
        else:
            if query.startswith("==", index):
                raise _unsupported(index, "the operator '==' (use =)")
            operator = next((op for op in _OPERATORS if query.startswith(op, index)), None)
            if operator is None:
                raise _unsupported(index, f"unexpected character {query[index]!r}")
            tokens.append(_Token("operator", operator, index))
            index += len(operator)

    tokens.append(_Token("end", "", len(query)))
    return tokens


def _read_quoted(query: str, start: int) -> tuple[str, int]:
    """Return the decoded text of the quoted string at `start` and the index after it."""
    quote = query[start]
    decoded: list[str] = []
    index = start + 1
    while index < len(query):
        char = query[index]
        if char == "\\" and index + 1 < len(query):
            decoded.append(query[index + 1])
            index += 2
            continue
        if char == quote:
            return "".join(decoded), index + 1
        decoded.append(char)
        index += 1
    raise _unsupported(start, "the quoted string is not closed")


def _read_regex(query: str, start: int) -> tuple[str, int]:
    """Return the pattern of the /regex/ at `start` and the index after it."""
    pattern: list[str] = []
    index = start + 1
    while index < len(query):
        char = query[index]
        if char == "\\" and index + 1 < len(query):
            # \/ is a literal slash, and every other escape belongs to the regex.
            following = query[index + 1]
            pattern.append(following if following == "/" else char + following)
            index += 2
            continue
        if char == "/":
            end = index + 1
            if end < len(query) and (query[end].isalnum() or query[end] == "_"):
                raise _unsupported(end, "flags after /regex/ (put (?i) inside the pattern instead)")
            return "".join(pattern), end
        pattern.append(char)
        index += 1
    raise _unsupported(start, "the /regex/ is not closed")


# -- parser --------------------------------------------------------------------


class _Parser:
    """Recursive-descent parser for one command's tokens."""

    def __init__(self, tokens: Sequence[_Token]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def accept_operator(self, operator: str) -> bool:
        if self.peek().is_operator(operator):
            self.advance()
            return True
        return False

    def accept_keyword(self, word: str) -> bool:
        if self.peek().is_keyword(word):
            self.advance()
            return True
        return False

    def expect_operator(self, operator: str) -> None:
        if not self.accept_operator(operator):
            found = self._describe()
            raise _unsupported(self.peek().position, f"expected {operator!r}, found {found}")

    def expect_end(self) -> None:
        if self.peek().kind != "end":
            raise _unsupported(self.peek().position, f"unexpected {self._describe()}")

    def field_name(self) -> str:
        token = self.advance()
        if token.kind != "name" or token.text.lower() in KEYWORDS:
            found = self._describe(token)
            raise _unsupported(token.position, f"expected a field name, found {found}")
        return token.text

    def comma_separated(self, parse_item: Callable[[], _Item]) -> list[_Item]:
        """Parse one or more items separated by commas."""
        items = [parse_item()]
        while self.accept_operator(","):
            items.append(parse_item())
        return items

    def _describe(self, token: _Token | None = None) -> str:
        token = token or self.peek()
        return "the end of the command" if token.kind == "end" else repr(token.text)

    # Conditions: or binds less tightly than and.

    def condition(self) -> Condition:
        return self._junction("or", self._conjunction)

    def _conjunction(self) -> Condition:
        return self._junction("and", self._condition_term)

    def _junction(self, operator: str, parse_part: Callable[[], Condition]) -> Condition:
        parts = [parse_part()]
        while self.accept_keyword(operator):
            parts.append(parse_part())
        return parts[0] if len(parts) == 1 else Junction(operator, tuple(parts))

    def _condition_term(self) -> Condition:
        if self.accept_operator("("):
            inner = self.condition()
            self.expect_operator(")")
            return inner
        if self.peek().is_keyword("not"):
            raise _unsupported(self.peek().position, "the not operator")

        left = self.arithmetic()
        token = self.peek()
        if token.is_operator("=", "!="):
            self.advance()
            return Comparison(token.text, left, self.arithmetic())
        if self.accept_keyword("like"):
            return self._like(left)
        if self.accept_keyword("not"):
            if not self.accept_keyword("like"):
                raise _unsupported(self.peek().position, "not other than in `not like`")
            return replace(self._like(left), negated=True)
        if self.accept_keyword("in"):
            return In(left, self._literal_list())
        raise _unsupported(token.position, f"expected =, !=, like or in, found {self._describe()}")

    def _like(self, operand: Expression) -> Like:
        token = self.advance()
        if token.kind == "regex":
            try:
                return Like(operand, re.compile(token.text), None)
            except re.error as error:
                detail = f"invalid regex /{token.text}/ ({error})"
                raise _unsupported(token.position, detail) from None
        if token.kind == "string":
            return Like(operand, None, token.text)
        found = self._describe(token)
        detail = f"expected /regex/ or a string after like, found {found}"
        raise _unsupported(token.position, detail)

    def _literal_list(self) -> tuple[str | int | float, ...]:
        self.expect_operator("[")
        values = self.comma_separated(self._literal)
        self.expect_operator("]")
        return tuple(values)

    def _literal(self) -> str | int | float:
        token = self.advance()
        if token.kind == "string":
            return token.text
        if token.kind == "number":
            return _parse_number(token.text)
        found = self._describe(token)
        raise _unsupported(token.position, f"expected a string or number, found {found}")

    # Arithmetic: * and / bind more tightly than + and -.

    def arithmetic(self) -> Expression:
        left = self._product()
        while self.peek().is_operator("+", "-"):
            operator = self.advance().text
            left = Arithmetic(operator, left, self._product())
        return left

    def _product(self) -> Expression:
        left = self._operand()
        while self.peek().is_operator("*", "/"):
            operator = self.advance().text
            left = Arithmetic(operator, left, self._operand())
        return left

    def _operand(self) -> Expression:
        token = self.peek()
        if token.kind == "number":
            self.advance()
            return Literal(_parse_number(token.text))
        if token.kind == "string":
            self.advance()
            return Literal(token.text)
        if token.kind == "name" and token.text.lower() not in KEYWORDS:
            self.advance()
            if self.peek().is_operator("("):
                raise _unsupported(token.position, f"the function {token.text}()")
            return Field(token.text)
        found = self._describe()
        raise _unsupported(token.position, f"expected a field, number or string, found {found}")


def parse_query(query: str) -> list[Command]:
    """Parse `query` into its commands. Raises UnsupportedQueryError outside the subset."""
    segments: list[list[_Token]] = [[]]
    pipes: list[_Token] = []
    for token in _tokenize(query):
        if token.is_operator("|"):
            pipes.append(token)
            segments.append([])
        elif token.kind != "end":
            segments[-1].append(token)

    commands: list[Command] = []
    for number, segment in enumerate(segments):
        if not segment:
            position = pipes[number - 1].position if number else 0
            raise _unsupported(position, "an empty command before or after a pipe")
        end = _Token("end", "", segment[-1].position + len(segment[-1].text))
        command = _parse_command(_Parser([*segment, end]))
        _check_command_order(command, commands, segment[0].position)
        commands.append(command)
    return commands


def _parse_command(parser: _Parser) -> Command:
    keyword = parser.advance()
    name = keyword.text.lower() if keyword.kind == "name" else ""
    if name not in COMMANDS:
        supported = ", ".join(COMMANDS)
        detail = f"the command {keyword.text!r} (supported: {supported})"
        raise _unsupported(keyword.position, detail)

    command: Command
    if name == "fields":
        command = FieldsCommand(tuple(parser.comma_separated(parser.field_name)))
    elif name == "filter":
        command = FilterCommand(parser.condition())
    elif name == "stats":
        command = _parse_stats(parser)
    elif name == "sort":
        command = _parse_sort(parser)
    else:
        token = parser.advance()
        if token.kind != "number" or not token.text.isdigit() or int(token.text) < 1:
            raise _unsupported(token.position, "limit needs a whole number of at least 1")
        command = LimitCommand(int(token.text))
    parser.expect_end()
    return command


def _parse_stats(parser: _Parser) -> StatsCommand:
    aggregates = parser.comma_separated(lambda: _parse_aggregate(parser))
    groups: list[Field | TimeBin] = []
    if parser.accept_keyword("by"):
        groups = parser.comma_separated(lambda: _parse_group(parser))
    return StatsCommand(tuple(aggregates), tuple(groups))


def _parse_aggregate(parser: _Parser) -> Aggregate:
    token = parser.advance()
    function = token.text.lower() if token.kind == "name" else ""
    if function not in AGGREGATE_FUNCTIONS:
        raise _unsupported(
            token.position,
            f"the stats function {token.text!r} (supported: {', '.join(AGGREGATE_FUNCTIONS)})",
        )
    parser.expect_operator("(")

    argument: Expression | None = None
    percent: float | None = None
    if function == "count":
        parser.expect_operator("*")
    else:
        argument = parser.arithmetic()
    if function == "pct":
        parser.expect_operator(",")
        percent_token = parser.advance()
        if percent_token.kind != "number" or not 0 <= float(percent_token.text) <= 100:
            raise _unsupported(percent_token.position, "pct needs a percentile from 0 to 100")
        percent = float(percent_token.text)
    parser.expect_operator(")")

    name = _render_aggregate(function, argument, percent)
    if parser.accept_keyword("as"):
        name = parser.field_name()
    return Aggregate(function, argument, percent, name)


def _parse_group(parser: _Parser) -> Field | TimeBin:
    token = parser.peek()
    if token.is_keyword("bin"):
        parser.advance()
        parser.expect_operator("(")
        period = parser.advance()
        match = None
        if period.kind == "duration":
            match = re.fullmatch(r"(\d+)([A-Za-z]+)", period.text)
        if not match or match.group(2) not in BIN_UNIT_MS or int(match.group(1)) < 1:
            units = ", ".join(BIN_UNIT_MS)
            detail = f"bin() needs a period such as 15m, with a unit of {units}"
            raise _unsupported(period.position, detail)
        parser.expect_operator(")")
        if parser.peek().is_keyword("as"):
            raise _unsupported(parser.peek().position, "a name for a group with as")
        period_ms = int(match.group(1)) * BIN_UNIT_MS[match.group(2)]
        return TimeBin(period_ms, f"bin({period.text})")

    name = parser.field_name()
    following = parser.peek()
    if following.kind != "end" and not following.is_operator(","):
        raise _unsupported(following.position, "a group that is not a field or bin()")
    return Field(name)


def _parse_sort(parser: _Parser) -> SortCommand:
    name = parser.field_name()
    if parser.accept_keyword("desc"):
        return SortCommand(name, descending=True)
    if parser.accept_keyword("asc"):
        return SortCommand(name, descending=False)
    raise _unsupported(
        parser.peek().position,
        "sort needs asc or desc, because this evaluator does not assume a default order",
    )


def _check_command_order(command: Command, earlier: Sequence[Command], position: int) -> None:
    """Reject command combinations whose meaning this evaluator does not model."""
    earlier_types = {type(earlier_command) for earlier_command in earlier}
    if isinstance(command, StatsCommand) and StatsCommand in earlier_types:
        raise _unsupported(position, "a second stats command")
    if isinstance(command, FieldsCommand):
        if StatsCommand in earlier_types:
            raise _unsupported(position, "a fields command after stats")
        if FieldsCommand in earlier_types:
            raise _unsupported(position, "a second fields command")


def _render(expression: Expression) -> str:
    if isinstance(expression, Field):
        return expression.name
    if isinstance(expression, Literal):
        value = expression.value
        return json.dumps(value) if isinstance(value, str) else str(value)
    return f"{_render(expression.left)} {expression.operator} {_render(expression.right)}"


def _render_aggregate(function: str, argument: Expression | None, percent: float | None) -> str:
    if argument is None:
        return f"{function}(*)"
    if percent is not None:
        return f"{function}({_render(argument)}, {percent:g})"
    return f"{function}({_render(argument)})"


def _parse_number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


# -- discovered fields ---------------------------------------------------------


def format_timestamp(timestamp_ms: int) -> str:
    """Return `timestamp_ms` (Unix ms) in the form Logs Insights shows @timestamp."""
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc)
    return f"{moment.strftime(TIMESTAMP_FORMAT)}.{timestamp_ms % 1000:03d}"


def _timestamp_ms(text: str) -> int:
    moment = datetime.strptime(text, f"{TIMESTAMP_FORMAT}.%f").replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000 + 0.5)


def discover_fields(event: LogEvent) -> dict[str, Any]:
    """Return the fields Logs Insights discovers in `event`: system, Lambda and JSON fields."""
    fields: dict[str, Any] = {
        "@timestamp": format_timestamp(event.timestamp_ms),
        "@message": event.message,
        "@log": event.log_group,
        "@logStream": event.log_stream,
    }

    platform = _PLATFORM_LINE.match(event.message)
    if platform:
        fields["@type"] = platform.group("type")
        fields["@requestId"] = platform.group("request_id")
        if platform.group("type") == "REPORT":
            fields.update(_report_fields(event.message))
        return fields

    if event.message.lstrip().startswith("{"):
        try:
            document = json.loads(event.message)
        except ValueError:
            document = None
        if isinstance(document, dict):
            _flatten(document, "", fields)
    return fields


def _report_fields(message: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, (pattern, factor) in _REPORT_NUMBERS.items():
        match = pattern.search(message)
        if match:
            fields[name] = _parse_number(match.group(1)) * factor
    xray = _REPORT_XRAY.search(message)
    if xray:
        fields["@xrayTraceId"] = xray.group(1)
        fields["@xraySegmentId"] = xray.group(2)
    return fields


def _flatten(document: dict[str, Any], prefix: str, into: dict[str, Any]) -> None:
    # NOTE: JSON null and arrays are left out, because the saved queries read neither.
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, f"{name}.", into)
        elif value is not None and not isinstance(value, list):
            into.setdefault(name, value)


# -- evaluation ----------------------------------------------------------------


def run_query(query: str, events: Iterable[LogEvent]) -> list[dict[str, Any]]:
    """Run `query` over `events` and return its result rows in order."""
    commands = parse_query(query)
    rows = [discover_fields(event) for event in events]
    result_fields: Sequence[str] = DEFAULT_RESULT_FIELDS
    aggregated = False

    for command in commands:
        if isinstance(command, FieldsCommand):
            result_fields = command.names
        elif isinstance(command, FilterCommand):
            rows = [row for row in rows if _matches(command.condition, row)]
        elif isinstance(command, StatsCommand):
            rows = _aggregate(command, rows)
            aggregated = True
        elif isinstance(command, SortCommand):
            rows = _sort(rows, command)
        else:
            rows = rows[: command.count]

    if aggregated:
        return rows
    return [{name: row[name] for name in result_fields if name in row} for row in rows]


def _evaluate(expression: Expression, row: dict[str, Any]) -> Any:
    """Return the value of `expression` in `row`, or None when it has none."""
    if isinstance(expression, Field):
        return row.get(expression.name)
    if isinstance(expression, Literal):
        return expression.value

    left = _as_number(_evaluate(expression.left, row))
    right = _as_number(_evaluate(expression.right, row))
    if left is None or right is None:
        return None
    if expression.operator == "+":
        return left + right
    if expression.operator == "-":
        return left - right
    if expression.operator == "*":
        return left * right
    return left / right if right else None


def _matches(condition: Condition, row: dict[str, Any]) -> bool:
    # NOTE: a comparison, like or in with an absent field is false, also for
    # !=. That is SQL's rule for null, and it is not checked against Logs Insights.
    if isinstance(condition, Junction):
        results = (_matches(part, row) for part in condition.parts)
        return all(results) if condition.operator == "and" else any(results)

    if isinstance(condition, Comparison):
        left = _evaluate(condition.left, row)
        right = _evaluate(condition.right, row)
        if left is None or right is None:
            return False
        return _equal(left, right) == (condition.operator == "=")

    value = _evaluate(condition.operand, row)
    if value is None:
        return False
    if isinstance(condition, In):
        return any(_equal(value, candidate) for candidate in condition.values)
    text = _as_text(value)
    if condition.pattern is not None:
        found = condition.pattern.search(text) is not None
    else:
        found = condition.text is not None and condition.text in text
    return found != condition.negated


def _equal(left: Any, right: Any) -> bool:
    left_number, right_number = _as_number(left), _as_number(right)
    if left_number is not None and right_number is not None:
        return left_number == right_number
    return _as_text(left) == _as_text(right)


def _as_number(value: Any) -> int | float | None:
    """Return `value` as a number. JSON numbers and numeric strings count, booleans do not."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _SIGNED_NUMBER.fullmatch(value.strip()):
        return _parse_number(value.strip())
    return None


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _aggregate(command: StatsCommand, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        key = tuple(_group_value(group, row) for group in command.groups)
        groups.setdefault(key, []).append(row)

    # NOTE: a row without a "by" field joins the group whose value is absent,
    # and that group's row leaves the field out.
    results: list[dict[str, Any]] = []
    for key, members in groups.items():
        result: dict[str, Any] = {}
        for group, value in zip(command.groups, key):
            if value is not None:
                result[group.name] = value
        for aggregate in command.aggregates:
            value = _aggregate_value(aggregate, members)
            if value is not None:
                result[aggregate.name] = value
        results.append(result)
    return results


def _group_value(group: Field | TimeBin, row: dict[str, Any]) -> Any:
    if isinstance(group, Field):
        return row.get(group.name)
    timestamp_ms = _timestamp_ms(row["@timestamp"])
    return format_timestamp(timestamp_ms - timestamp_ms % group.period_ms)


def _aggregate_value(aggregate: Aggregate, rows: list[dict[str, Any]]) -> int | float | None:
    if aggregate.argument is None:
        return len(rows)

    # Values that are not numbers are skipped, as for an absent field.
    numbers = [_as_number(_evaluate(aggregate.argument, row)) for row in rows]
    values = [number for number in numbers if number is not None]
    if not values:
        return None
    if aggregate.function == "sum":
        return sum(values)
    if aggregate.function == "avg":
        return sum(values) / len(values)
    if aggregate.function == "max":
        return max(values)

    # NOTE: pct uses the nearest-rank definition (the smallest value with at
    # least n % of the values at or below it). Logs Insights does not document
    # its method and may interpolate or approximate, so its result can differ.
    assert aggregate.percent is not None
    ordered = sorted(values)
    rank = max(1, math.ceil(aggregate.percent / 100 * len(ordered)))
    return ordered[rank - 1]


def _sort(rows: list[dict[str, Any]], command: SortCommand) -> list[dict[str, Any]]:
    # NOTE: rows without the field go last in both directions. The Logs
    # Insights documentation does not say where they go.
    present = [row for row in rows if row.get(command.name) is not None]
    absent = [row for row in rows if row.get(command.name) is None]
    key: Callable[[dict[str, Any]], Any] = functools.cmp_to_key(
        lambda left, right: _compare_values(left[command.name], right[command.name])
    )
    return sorted(present, key=key, reverse=command.descending) + absent


def _compare_values(left: Any, right: Any) -> int:
    left_number, right_number = _as_number(left), _as_number(right)
    if left_number is not None and right_number is not None:
        return (left_number > right_number) - (left_number < right_number)
    if left_number is not None:
        return 1
    if right_number is not None:
        return -1
    return _compare_natural(_as_text(left), _as_text(right))


def _compare_natural(left: str, right: str) -> int:
    """Compare texts chunk by chunk: digit runs by length then value, other runs by code point."""
    left_chunks = re.findall(r"\d+|\D+", left)
    right_chunks = re.findall(r"\d+|\D+", right)
    for left_chunk, right_chunk in zip(left_chunks, right_chunks):
        if left_chunk == right_chunk:
            continue
        if left_chunk.isdigit() and right_chunk.isdigit():
            left_key = (len(left_chunk), int(left_chunk))
            right_key = (len(right_chunk), int(right_chunk))
            return (left_key > right_key) - (left_key < right_key)
        return (left_chunk > right_chunk) - (left_chunk < right_chunk)
    return (len(left_chunks) > len(right_chunks)) - (len(left_chunks) < len(right_chunks))
