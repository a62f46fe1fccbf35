#!/usr/bin/env python3
"""Write the API's OpenAPI document, taken from template.yaml, as plain JSON.

The CallflowApi resource's DefinitionBody is the API's OpenAPI 3.0 document,
but it contains CloudFormation intrinsic functions (!Sub, !Ref, !GetAtt,
!If), which OpenAPI tools cannot read. This tool replaces each of them with
a plain value: a parameter's default (or the value given with --parameter),
a pseudo parameter's example value, or "<LogicalId>" for a resource. It then
adds a `servers` entry with the API base URL, so that clients and fuzzers
such as schemathesis know where to send requests.

    python tools/openapi_export.py --server-url http://127.0.0.1:4566/_aws/execute-api/ID/v1
    python tools/openapi_export.py --stack-name callflow-local -o .local/openapi.json

With --stack-name (and AWS_ENDPOINT_URL pointing at the emulator), the base
URL, as `tools/local_stack.py url` prints it, and the parameter values come
from the deployed stack.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = ROOT / "template.yaml"
API_LOGICAL_ID = "CallflowApi"

# Example values for the pseudo parameters. Only descriptions and integration URIs use them.
PSEUDO_PARAMETERS = {
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "callflow",
    "AWS::URLSuffix": "amazonaws.com",
}
SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
INTRINSIC_KEYS = frozenset(
    {
        "Ref",
        "Condition",
        "Fn::Sub",
        "Fn::GetAtt",
        "Fn::If",
        "Fn::Join",
        "Fn::Select",
        "Fn::Split",
        "Fn::FindInMap",
        "Fn::ImportValue",
        "Fn::Base64",
        "Fn::GetAZs",
        "Fn::Equals",
        "Fn::Not",
        "Fn::And",
        "Fn::Or",
    }
)


class TemplateError(Exception):
    """The template has no usable OpenAPI body, or an intrinsic function cannot be resolved."""


class _NoValue:
    """AWS::NoValue: the property or list item is left out."""


_NO_VALUE = _NoValue()


class IntrinsicResolver:
    """Replaces CloudFormation intrinsic functions with plain values."""

    def __init__(self, template: dict[str, Any], overrides: dict[str, str]) -> None:
        self.parameters: dict[str, Any] = {
            name: definition.get("Default", "")
            for name, definition in (template.get("Parameters") or {}).items()
        }
        self.parameters.update(overrides)
        self.resources = set(template.get("Resources") or {})
        self.conditions = template.get("Conditions") or {}

    def resolve(self, value: Any) -> Any:
        """Return `value` with every intrinsic function replaced, recursively."""
        if isinstance(value, list):
            resolved = [self.resolve(item) for item in value]
            return [item for item in resolved if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value

        if len(value) == 1:
            (key, argument), = value.items()
            if key in INTRINSIC_KEYS:
                return self._intrinsic(key, argument)

        resolved_items = {name: self.resolve(item) for name, item in value.items()}
        return {name: item for name, item in resolved_items.items() if item is not _NO_VALUE}

    def _intrinsic(self, key: str, argument: Any) -> Any:
        if key == "Ref":
            return self._reference(argument)
        if key == "Fn::Sub":
            return self._substitute(argument)
        if key == "Fn::GetAtt":
            name = argument if isinstance(argument, str) else ".".join(argument)
            return f"<{name}>"
        if key == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self._condition(condition) else when_false)
        if key == "Fn::Join":
            separator, items = argument
            return separator.join(str(item) for item in self.resolve(items))
        raise TemplateError(
            f"{key} is not supported in the OpenAPI body: resolve it in template.yaml "
            "or extend tools/openapi_export.py."
        )

    def _reference(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        # SAM generates resources named after their function, such as
        # StorerFunctionAliaslive for AutoPublishAlias: live.
        if any(name.startswith(resource) for resource in self.resources):
            return f"<{name}>"
        raise TemplateError(
            f"!Ref {name} names no parameter, pseudo parameter or resource of the template. "
            "Fix the reference in template.yaml, or add the pseudo parameter to "
            "PSEUDO_PARAMETERS in tools/openapi_export.py."
        )

    def _substitute(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {k: self.resolve(v) for k, v in argument[1].items()}
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                return f"<{name}>"
            return str(self._reference(name))

        return SUB_VARIABLE.sub(replace, text)

    def _condition(self, name: str) -> bool:
        return bool(self._evaluate(self.conditions[name]))

    def _evaluate(self, expression: Any) -> Any:
        if not isinstance(expression, dict) or len(expression) != 1:
            return self.resolve(expression)
        (key, argument), = expression.items()
        if key == "Fn::Equals":
            left, right = (self._evaluate(item) for item in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self._evaluate(argument[0])
        if key == "Fn::And":
            return all(self._evaluate(item) for item in argument)
        if key == "Fn::Or":
            return any(self._evaluate(item) for item in argument)
        if key == "Condition":
            return self._condition(argument)
        return self.resolve(expression)


def export_openapi(
    template_path: Path,
    server_url: str | None,
    parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Return the OpenAPI document of the template's CallflowApi with intrinsics resolved."""
    from samcli.yamlhelper import yaml_parse

    template = yaml_parse(template_path.read_text())
    try:
        body = template["Resources"][API_LOGICAL_ID]["Properties"]["DefinitionBody"]
    except KeyError as error:
        raise TemplateError(
            f"{template_path} has no Resources.{API_LOGICAL_ID}.Properties.DefinitionBody"
        ) from error

    document = IntrinsicResolver(template, parameters or {}).resolve(body)
    if server_url:
        document["servers"] = [{"url": server_url.rstrip("/")}]
    return document


def _stack_target(stack_name: str) -> tuple[str, dict[str, str]]:
    """Return the emulator base URL of a deployed stack and its parameter values."""
    sys.path.insert(0, str(ROOT / "tools"))
    from local_stack import describe_stack, local_base_url

    stack = describe_stack(stack_name)
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
    parameters = {
        item["ParameterKey"]: item["ParameterValue"] for item in stack.get("Parameters", [])
    }
    return local_base_url(outputs), parameters


def _parameter(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected NAME=VALUE, such as StageName=v1"
        )
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--template",
        type=Path,
        default=DEFAULT_TEMPLATE,
        help="SAM template to read (default: template.yaml)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--server-url", help="API base URL for the servers entry")
    source.add_argument(
        "--stack-name",
        help="read the base URL and parameter values from this stack in the emulator "
        "that AWS_ENDPOINT_URL names",
    )
    parser.add_argument(
        "--parameter",
        type=_parameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter value to use instead of its default (repeatable)",
    )
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    args = parser.parse_args(argv)

    server_url, parameters = args.server_url, {}
    if args.stack_name:
        server_url, parameters = _stack_target(args.stack_name)
    parameters.update(args.parameter)
    try:
        document = export_openapi(args.template, server_url, parameters)
    except TemplateError as error:
        print(f"openapi_export.py: error: {error}", file=sys.stderr)
        return 1

    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
