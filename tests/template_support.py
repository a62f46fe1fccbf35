"""Load template.yaml, apply the SAM transform offline, and evaluate its conditions.

The transform is aws-sam-translator's, the same code that `sam deploy` and the
local emulator run. It needs no network: the managed-policy loader is a stub,
because the template names no AWS managed policy by name.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
SAMCONFIG_PATH = ROOT / "samconfig.toml"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"

# Resource types MiniStack 1.5.33 has no provisioner for, so a stack holding
# one of them fails to deploy into the local emulator.
EMULATOR_REJECTED_TYPES = frozenset({
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::CodeDeploy::Application",
    "AWS::CodeDeploy::DeploymentConfig",
    "AWS::CodeDeploy::DeploymentGroup",
    "AWS::Logs::QueryDefinition",
})

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class _NoManagedPolicies:
    """Managed-policy loader for the translator; the template uses policy ARNs only."""

    def load(self) -> dict[str, str]:
        return {}


def load_template() -> dict[str, Any]:
    """Parse template.yaml with the SAM YAML loader (short-form intrinsics become dicts)."""
    return yaml_parse(TEMPLATE_PATH.read_text())


def samconfig_overrides(config_env: str) -> dict[str, str]:
    """Return the parameter_overrides of one samconfig.toml section as a dict."""
    config = tomllib.loads(SAMCONFIG_PATH.read_text())
    overrides = config[config_env]["deploy"]["parameters"]["parameter_overrides"]
    pairs = shlex.split(overrides) if isinstance(overrides, str) else list(overrides)
    return dict(pair.split("=", 1) for pair in pairs)


def parameter_values(template: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    """Return every parameter's value in the form CloudFormation passes it (a string), defaults included."""
    values = {
        name: str(definition["Default"])
        for name, definition in template["Parameters"].items()
        if "Default" in definition
    }
    values.update(overrides)
    return values


@contextmanager
def _region() -> Iterator[None]:
    # The translator reads the region from boto3's default session.
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = REGION
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def packaged_template() -> dict[str, Any]:
    """Return the template with S3 code locations, as `sam deploy` uploads it.

    The translator accepts only s3:// URIs for CodeUri and ContentUri.
    """
    template = load_template()
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://callflow-artifacts/{logical_id}.zip"
    return template


def transform_template(overrides: Mapping[str, str]) -> dict[str, Any]:
    """Return the CloudFormation template that the SAM transform makes with these parameters.

    This is what CloudFormation does on AWS: the transform receives the
    deploy's parameter values, and the defaults for the rest.
    """
    with _region():
        return transform(packaged_template(), dict(overrides), _NoManagedPolicies())


def transform_like_emulator() -> dict[str, Any]:
    """Return the template as the local emulator transforms it: with no parameter values.

    MiniStack 1.5.33 calls the translator with an empty parameter map, so
    every value SAM resolves at transform time (DeploymentPreference Enabled
    and Type) is the template's default, whatever the deploy passes.
    """
    with _region():
        return transform(packaged_template(), {}, _NoManagedPolicies())


def evaluate_condition(template: Mapping[str, Any], name: str, values: Mapping[str, str]) -> bool:
    """Evaluate the named condition of `template` with these parameter values."""
    return _evaluate(template, template["Conditions"][name], values)


def _evaluate(template: Mapping[str, Any], expression: Any, values: Mapping[str, str]) -> Any:
    if not isinstance(expression, dict):
        return str(expression)

    (function, argument), = expression.items()
    if function == "Ref":
        return values[argument]
    if function == "Condition":
        return evaluate_condition(template, argument, values)
    if function == "Fn::Equals":
        left, right = (_evaluate(template, item, values) for item in argument)
        return left == right
    if function == "Fn::Not":
        return not _evaluate(template, argument[0], values)
    if function == "Fn::And":
        return all(_evaluate(template, item, values) for item in argument)
    if function == "Fn::Or":
        return any(_evaluate(template, item, values) for item in argument)
    raise ValueError(f"condition function {function} is not supported by this evaluator")


def created_resources(transformed: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """Return the resources CloudFormation creates: those without a condition or with a true one."""
    return {
        logical_id: resource
        for logical_id, resource in transformed["Resources"].items()
        if "Condition" not in resource
        or evaluate_condition(transformed, resource["Condition"], values)
    }


def resources_of_type(resources: Mapping[str, Any], resource_type: str) -> dict[str, Any]:
    """Return the resources of one CloudFormation type, by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in resources.items()
        if resource["Type"] == resource_type
    }


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Replace every ${Name} of a Fn::Sub string; raise KeyError for an unknown name."""
    return _SUB_VARIABLE.sub(lambda match: variables[match.group(1)], text)
