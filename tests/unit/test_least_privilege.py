"""Least privilege of the stack's functions and the events bucket, on the SAM transform's output.

Each test runs on two transforms: the template's defaults (a dev stack) and
the prod section of samconfig.toml. The template writes each function's role
out (SAM would attach AWSLambdaBasicExecutionRole, whose logs actions cover
every log group). Should a role ever name an AWS managed policy, its
statements are copied below from the AWS Managed Policy Reference, so the
checks see what it grants.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.template_support import (
    created_resources,
    load_template,
    parameter_values,
    resources_of_type,
    samconfig_overrides,
    transform_template,
)

# The translator logs a harmless notice about feature toggles on every run.
logging.getLogger("samtranslator").setLevel(logging.ERROR)

BUCKET_ARN = "${EventsBucket.Arn}"
EVENTS_OBJECTS = "${EventsBucket.Arn}/events/*"
INDEX_OBJECTS = "${EventsBucket.Arn}/index/*"
SIGNING_SECRET = "${JwtSigningSecret}"
PAGINATION_SECRET = "${PaginationSecret}"
SECRETS_KEY = "${SecretsKey.Arn}"
FUNCTION_PREFIXES = ("Authorizer", "Storer", "Retriever")

BASIC_EXECUTION_ROLE = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
XRAY_WRITE_ONLY = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"
LOGS_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")
XRAY_ACTIONS = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
)

# The statements of the AWS managed policies SAM attaches to the function
# roles, as the AWS Managed Policy Reference lists their default versions
# (AWSLambdaBasicExecutionRole v1, AWSXrayWriteOnlyAccess v2).
MANAGED_POLICY_STATEMENTS: dict[str, list[dict[str, Any]]] = {
    # SAM attaches it to every role it generates; Lambda writes the function's logs with it.
    BASIC_EXECUTION_ROLE: [{"Effect": "Allow", "Action": list(LOGS_ACTIONS), "Resource": "*"}],
    # Tracing: Active in the template's Globals makes SAM attach it.
    XRAY_WRITE_ONLY: [{"Effect": "Allow", "Action": list(XRAY_ACTIONS), "Resource": ["*"]}],
}

# Actions that may be allowed on Resource "*", each with the reason.
WILDCARD_RESOURCE_ACTIONS = {
    # The X-Ray service authorization reference lists no resource type for
    # these actions: trace data and sampling rules are read and written per account.
    **{action: "X-Ray defines no resource type for this action" for action in XRAY_ACTIONS},
}
# Every function writes its own log group and X-Ray traces; the per-function
# checks below look at the grants beyond those.
COMMON_ACTIONS = frozenset(LOGS_ACTIONS) | frozenset(XRAY_ACTIONS)


# ---------------------------------------------------------------- helpers


def stack_variants() -> Iterator[Any]:
    yield pytest.param({}, id="defaults")
    yield pytest.param(samconfig_overrides("prod"), id="prod")


@pytest.fixture(scope="module", params=list(stack_variants()))
def resources(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The resources CloudFormation creates from the transformed template."""
    overrides = request.param
    transformed = transform_template(overrides)
    values = parameter_values(load_template(), overrides)
    return created_resources(transformed, values)


def resource_text(value: Any) -> str:
    """Return a policy Resource as one string: "${Logical.Attribute}" for intrinsics."""
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    if "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        return f"${{{logical_id}.{attribute}}}"
    if "Ref" in value:
        return f"${{{value['Ref']}}}"
    raise ValueError(f"resource {value!r} uses an intrinsic this test does not read")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def function_role(resources: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Return the properties of the IAM role the function `<prefix>Function` runs with."""
    function = resources[f"{prefix}Function"]
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return resources[role_id]["Properties"]


def inline_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in role.get("Policies", [])
        for statement in as_list(policy["PolicyDocument"]["Statement"])
    ]


def all_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the inline statements and those of the role's known managed policies."""
    managed = [
        statement
        for arn in role.get("ManagedPolicyArns", [])
        for statement in MANAGED_POLICY_STATEMENTS.get(arn, [])
    ]
    return inline_statements(role) + managed


def allowed_pairs(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Return every (action, resource) an Allow statement grants."""
    return {
        (action, resource_text(resource))
        for statement in statements
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }


def function_pairs(resources: dict[str, Any], prefix: str) -> set[tuple[str, str]]:
    """Return the grants of a function's role beyond logging and tracing."""
    granted = allowed_pairs(inline_statements(function_role(resources, prefix)))
    return {pair for pair in granted if pair[0] not in COMMON_ACTIONS}


# ---------------------------------------------------------------- per function


def test_storer_grants_stay_in_bucket_prefixes(resources):
    granted = function_pairs(resources, "Storer")

    allowed = {
        (action, resource)
        for action in ("s3:PutObject", "s3:GetObject")
        for resource in (EVENTS_OBJECTS, INDEX_OBJECTS)
    }
    # A conflicting post deletes the index entries it created; events are never deleted.
    allowed.add(("s3:DeleteObject", INDEX_OBJECTS))
    assert granted <= allowed, sorted(granted - allowed)


def test_storer_has_what_conditional_writes_need(resources):
    # GetObject on index/ covers the HeadObject that checks an index entry
    # after a lasting 409 ConditionalRequestConflict.
    granted = function_pairs(resources, "Storer")

    assert ("s3:PutObject", EVENTS_OBJECTS) in granted
    assert ("s3:PutObject", INDEX_OBJECTS) in granted
    assert ("s3:GetObject", EVENTS_OBJECTS) in granted
    assert ("s3:GetObject", INDEX_OBJECTS) in granted
    assert ("s3:DeleteObject", INDEX_OBJECTS) in granted
    assert ("s3:DeleteObject", EVENTS_OBJECTS) not in granted


def test_retriever_grants_are_read_only(resources):
    granted = function_pairs(resources, "Retriever")

    allowed = {
        ("s3:GetObject", EVENTS_OBJECTS),
        ("s3:GetObject", INDEX_OBJECTS),
        ("s3:ListBucket", BUCKET_ARN),
        ("secretsmanager:GetSecretValue", PAGINATION_SECRET),
        ("kms:Decrypt", SECRETS_KEY),
    }
    assert granted <= allowed, sorted(granted - allowed)


def test_retriever_has_what_queries_need(resources):
    granted = function_pairs(resources, "Retriever")

    assert ("s3:GetObject", EVENTS_OBJECTS) in granted
    assert ("s3:ListBucket", BUCKET_ARN) in granted
    assert ("secretsmanager:GetSecretValue", PAGINATION_SECRET) in granted
    assert ("kms:Decrypt", SECRETS_KEY) in granted


def test_authorizer_may_only_read_its_signing_secret(resources):
    granted = function_pairs(resources, "Authorizer")

    assert granted == {
        ("secretsmanager:GetSecretValue", SIGNING_SECRET),
        ("kms:Decrypt", SECRETS_KEY),
    }


@pytest.mark.parametrize(
    ("prefix", "secret_id"),
    [("Authorizer", "JwtSigningSecret"), ("Retriever", "PaginationSecret")],
)
def test_secrets_key_decrypts_only_own_secret(resources, prefix, secret_id):
    # Both secrets share SecretsKey, so the encryption context condition is
    # what keeps one function from decrypting the other's secret.
    decrypts = [
        statement
        for statement in inline_statements(function_role(resources, prefix))
        if "kms:Decrypt" in as_list(statement["Action"])
    ]

    assert len(decrypts) == 1
    condition = decrypts[0]["Condition"]["StringEquals"]
    assert condition["kms:EncryptionContext:SecretARN"] == {"Ref": secret_id}
    assert resource_text(condition["kms:ViaService"]).startswith("secretsmanager.")


@pytest.mark.parametrize("prefix", FUNCTION_PREFIXES)
def test_function_statements_use_no_negations(resources, prefix):
    # NotAction and NotResource grant everything they do not name, which the
    # (action, resource) pairs above would not show.
    for statement in inline_statements(function_role(resources, prefix)):
        assert "NotAction" not in statement
        assert "NotResource" not in statement


# ---------------------------------------------------------------- every function role


@pytest.mark.parametrize("prefix", FUNCTION_PREFIXES)
def test_function_role_uses_only_known_managed_policies(resources, prefix):
    arns = set(function_role(resources, prefix).get("ManagedPolicyArns", []))

    assert arns <= set(MANAGED_POLICY_STATEMENTS), sorted(arns - set(MANAGED_POLICY_STATEMENTS))


@pytest.mark.parametrize("prefix", FUNCTION_PREFIXES)
def test_function_role_allows_no_wildcard_action(resources, prefix):
    granted = allowed_pairs(all_statements(function_role(resources, prefix)))
    actions = {action for action, _ in granted}

    assert "*" not in actions
    assert "s3:*" not in actions
    assert not [action for action in actions if action.endswith(":*")]


@pytest.mark.parametrize("prefix", FUNCTION_PREFIXES)
def test_inline_policies_name_their_resources(resources, prefix):
    granted = function_pairs(resources, prefix)

    assert not [pair for pair in granted if pair[1] == "*"]


@pytest.mark.parametrize("prefix", FUNCTION_PREFIXES)
def test_wildcard_resources_only_where_aws_requires(resources, prefix):
    granted = allowed_pairs(all_statements(function_role(resources, prefix)))

    tolerated = set(WILDCARD_RESOURCE_ACTIONS)
    wildcard_actions = {action for action, resource in granted if resource == "*"}
    assert wildcard_actions <= tolerated, sorted(wildcard_actions - tolerated)


@pytest.mark.parametrize("prefix", FUNCTION_PREFIXES)
def test_function_logs_only_to_its_log_group(resources, prefix):
    granted = allowed_pairs(all_statements(function_role(resources, prefix)))

    log_grants = {pair for pair in granted if pair[0].startswith("logs:")}
    own_group = f"${{{prefix}LogGroup.Arn}}"
    assert log_grants == {
        ("logs:CreateLogStream", own_group),
        ("logs:PutLogEvents", own_group),
    }


# ---------------------------------------------------------------- who may invoke


def test_invoke_permissions_name_their_routes(resources):
    permissions = resources_of_type(resources, "AWS::Lambda::Permission")
    source_arns = {
        logical_id: resource_text(permission["Properties"]["SourceArn"])
        for logical_id, permission in permissions.items()
    }

    api = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${CallflowApi}"
    assert source_arns["AuthorizerInvokePermission"] == f"{api}/authorizers/*"
    assert source_arns["StorerInvokePermission"] == f"{api}/*/POST/events"
    assert source_arns["RetrieverInvokePermission"] == f"{api}/*/GET/*"
    for permission in permissions.values():
        assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"


# ---------------------------------------------------------------- the events bucket


def bucket_properties(resources: dict[str, Any]) -> dict[str, Any]:
    return resources["EventsBucket"]["Properties"]


def bucket_policy_statements(resources: dict[str, Any]) -> list[dict[str, Any]]:
    policy = resources["EventsBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "EventsBucket"}
    return as_list(policy["PolicyDocument"]["Statement"])


def test_bucket_policy_denies_requests_without_tls(resources):
    denials = [
        statement
        for statement in bucket_policy_statements(resources)
        if statement["Effect"] == "Deny"
        and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]

    assert len(denials) == 1
    denial = denials[0]
    assert denial["Principal"] == "*"
    assert set(as_list(denial["Action"])) & {"s3:*", "*"}
    resources_denied = {resource_text(resource) for resource in as_list(denial["Resource"])}
    assert resources_denied == {BUCKET_ARN, f"{BUCKET_ARN}/*"}


def test_bucket_policy_allows_nobody(resources):
    # Access comes from the function roles only; the policy adds no grant.
    allows = [s for s in bucket_policy_statements(resources) if s["Effect"] == "Allow"]

    assert allows == []


def test_bucket_blocks_public_access(resources):
    block = bucket_properties(resources)["PublicAccessBlockConfiguration"]

    assert block == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_bucket_disables_acls(resources):
    rules = bucket_properties(resources)["OwnershipControls"]["Rules"]

    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_bucket_encrypts_objects_at_rest(resources):
    rules = bucket_properties(resources)["BucketEncryption"]["ServerSideEncryptionConfiguration"]

    algorithms = {rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for rule in rules}
    assert algorithms and algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"}


def test_bucket_keeps_object_versions(resources):
    assert bucket_properties(resources)["VersioningConfiguration"] == {"Status": "Enabled"}


def test_bucket_policy_denies_unconditional_event_writes(resources):
    denials = [
        statement
        for statement in bucket_policy_statements(resources)
        if statement["Effect"] == "Deny"
        and statement.get("Condition") == {"Null": {"s3:if-none-match": "true"}}
    ]

    assert len(denials) == 1
    assert denials[0]["Principal"] == "*"
    assert as_list(denials[0]["Action"]) == ["s3:PutObject"]
    denied = {resource_text(resource) for resource in as_list(denials[0]["Resource"])}
    assert denied == {EVENTS_OBJECTS, INDEX_OBJECTS}


# ---------------------------------------------------------------- the access logs bucket


def test_bucket_logs_requests_to_access_logs_bucket(resources):
    logging_configuration = bucket_properties(resources)["LoggingConfiguration"]

    assert logging_configuration["DestinationBucketName"] == {"Ref": "AccessLogsBucket"}


def test_only_log_delivery_may_write_access_logs(resources):
    policy = resources["AccessLogsBucketPolicy"]["Properties"]
    allows = [s for s in as_list(policy["PolicyDocument"]["Statement"]) if s["Effect"] == "Allow"]

    assert policy["Bucket"] == {"Ref": "AccessLogsBucket"}
    assert len(allows) == 1
    delivery = allows[0]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert as_list(delivery["Action"]) == ["s3:PutObject"]
    assert resource_text(delivery["Resource"]) == "${AccessLogsBucket.Arn}/events-bucket/*"
    # The policy spells the events bucket's ARN out, so it must follow the bucket's name.
    events_bucket_name = resource_text(bucket_properties(resources)["BucketName"])
    source_arn = resource_text(delivery["Condition"]["ArnLike"]["aws:SourceArn"])
    assert source_arn == f"arn:${{AWS::Partition}}:s3:::{events_bucket_name}"
