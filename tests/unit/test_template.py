"""The operational parts of template.yaml, checked on the SAM transform's output.

Most tests transform the template with the prod section of samconfig.toml
(Environment prod, GradualDeployment true, provisioned concurrency above 0),
which is what CloudFormation deploys there.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from tests.template_support import (
    ACCOUNT_ID,
    EMULATOR_REJECTED_TYPES,
    REGION,
    created_resources,
    evaluate_condition,
    load_template,
    parameter_values,
    resources_of_type,
    samconfig_overrides,
    substitute,
    transform_like_emulator,
    transform_template,
)

# The translator logs a harmless notice about feature toggles on every run.
logging.getLogger("samtranslator").setLevel(logging.ERROR)

TOPIC = {"Ref": "AlarmTopic"}
FUNCTIONS = {
    # logical id prefix: FunctionName as the template spells it
    "Authorizer": "callflow-authorizer-${Environment}",
    "Storer": "callflow-event-storer-${Environment}",
    "Retriever": "callflow-event-retriever-${Environment}",
}
SERVICE_NAMES = {
    "Authorizer": "callflow-authorizer",
    "Storer": "callflow-event-storer",
    "Retriever": "callflow-event-retriever",
}
GRADUALLY_DEPLOYED = ("Storer", "Retriever")

# (logical id, AlarmName, MetricName, Namespace, statistic property, statistic,
#  Period, EvaluationPeriods, threshold parameter, its default)
SINGLE_METRIC_ALARMS = [
    ("ApiLatencyAlarm", "callflow-api-high-latency-${Environment}", "Latency", "AWS/ApiGateway",
     "ExtendedStatistic", "p99", 300, 1, "ApiLatencyP99ThresholdMs", 3000),
    ("AuthFailuresAlarm", "callflow-auth-failures-${Environment}", "AuthorizationFailures", "Callflow",
     "Statistic", "Sum", 300, 1, "AuthFailuresThreshold", 50),
]
for _prefix, _name in FUNCTIONS.items():
    _short = _name.removeprefix("callflow-").removesuffix("-${Environment}")
    # The authorizer's errors include rejected tokens, so it has a threshold of its own.
    _errors_threshold = "AuthorizerErrorsThreshold" if _prefix == "Authorizer" else "FunctionErrorsThreshold"
    SINGLE_METRIC_ALARMS += [
        (f"{_prefix}ErrorsAlarm", f"callflow-{_short}-errors-${{Environment}}", "Errors", "AWS/Lambda",
         "Statistic", "Sum", 300, 1, _errors_threshold, 10),
        (f"{_prefix}ThrottlesAlarm", f"callflow-{_short}-throttles-${{Environment}}", "Throttles", "AWS/Lambda",
         "Statistic", "Sum", 60, 1, "FunctionThrottlesThreshold", 0),
        (f"{_prefix}DurationAlarm", f"callflow-{_short}-duration-${{Environment}}", "Duration", "AWS/Lambda",
         "ExtendedStatistic", "p99", 300, 3, "FunctionDurationP99ThresholdMs", 5000),
    ]

DASHBOARD_VARIABLES = {
    "AWS::Region": REGION,
    "Environment": "prod",
    "StageName": "v1",
    "AuthorizerFunction": "callflow-authorizer-prod",
    "StorerFunction": "callflow-event-storer-prod",
    "RetrieverFunction": "callflow-event-retriever-prod",
    "EventsBucket": f"callflow-events-prod-{ACCOUNT_ID}-{REGION}",
}
ACCESS_LOG_FIELDS = {
    "requestId", "ip", "requestTime", "httpMethod", "resourcePath", "status", "protocol",
    "responseLength", "responseLatency", "integrationLatency", "authorizerError", "principalId",
}
# API Gateway fills these in on every request, so they may go unquoted as JSON numbers.
ALWAYS_NUMERIC_CONTEXT_VARIABLES = {"requestTimeEpoch", "status", "responseLatency"}
CONTEXT_VARIABLE = re.compile(r"\$context\.[A-Za-z.]+")
UNQUOTED_CONTEXT_VARIABLE = re.compile(r'"(\w+)":\$context\.')


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def prod_overrides() -> dict[str, str]:
    return samconfig_overrides("prod")


@pytest.fixture(scope="module")
def prod(prod_overrides: dict[str, str]) -> dict[str, Any]:
    return transform_template(prod_overrides)


@pytest.fixture(scope="module")
def prod_values(template: dict[str, Any], prod_overrides: dict[str, str]) -> dict[str, str]:
    return parameter_values(template, prod_overrides)


@pytest.fixture(scope="module")
def local_values(template: dict[str, Any]) -> dict[str, str]:
    return parameter_values(template, samconfig_overrides("local"))


def _properties(transformed: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return transformed["Resources"][logical_id]["Properties"]


def _sub_variables(value: Any) -> set[str]:
    text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
    return set(re.findall(r"\$\{([^}]+)\}", text))


# ---------------------------------------------------------------- samconfig


def test_prod_section_is_prod_like(prod_overrides: dict[str, str]) -> None:
    assert prod_overrides["Environment"] == "prod"
    assert prod_overrides["GradualDeployment"] == "true"
    assert prod_overrides["DeploymentType"] == "Canary10Percent5Minutes"
    for prefix in FUNCTIONS:
        assert int(prod_overrides[f"{prefix}ProvisionedConcurrency"]) > 0, prefix


@pytest.mark.parametrize("config_env", ["default", "dev", "staging", "local"])
def test_other_sections_shift_traffic_at_once(config_env: str) -> None:
    overrides = samconfig_overrides(config_env)
    gradual = overrides.get("GradualDeployment", "false") == "true"
    assert not gradual or overrides.get("DeploymentType", "AllAtOnce") == "AllAtOnce"


def test_gradual_deployment_defaults_to_false(template: dict[str, Any]) -> None:
    # The emulator transforms with the defaults, whatever samconfig passes.
    assert template["Parameters"]["GradualDeployment"]["Default"] == "false"


# ---------------------------------------------------------------- alarms


@pytest.mark.parametrize(
    ("logical_id", "alarm_name", "metric", "namespace", "stat_key", "stat", "period",
     "evaluation_periods", "threshold_parameter", "threshold_default"),
    SINGLE_METRIC_ALARMS,
    ids=[row[0] for row in SINGLE_METRIC_ALARMS],
)
def test_alarm_matches_table(
    prod: dict[str, Any], template: dict[str, Any], logical_id: str, alarm_name: str,
    metric: str, namespace: str, stat_key: str, stat: str, period: int,
    evaluation_periods: int, threshold_parameter: str, threshold_default: int,
) -> None:
    alarm = _properties(prod, logical_id)

    assert alarm["AlarmName"] == {"Fn::Sub": alarm_name}
    assert alarm["MetricName"] == metric
    assert alarm["Namespace"] == namespace
    assert alarm[stat_key] == stat
    assert alarm["Period"] == period
    assert alarm["EvaluationPeriods"] == evaluation_periods
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == {"Ref": threshold_parameter}
    assert template["Parameters"][threshold_parameter]["Default"] == threshold_default
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == [TOPIC]
    assert alarm["OKActions"] == [TOPIC]


@pytest.mark.parametrize("prefix", FUNCTIONS)
@pytest.mark.parametrize("kind", ["Errors", "Throttles", "Duration"])
def test_function_alarm_watches_live_alias(prod: dict[str, Any], prefix: str, kind: str) -> None:
    dimensions = _properties(prod, f"{prefix}{kind}Alarm")["Dimensions"]

    assert dimensions == [
        {"Name": "FunctionName", "Value": {"Ref": f"{prefix}Function"}},
        {"Name": "Resource", "Value": {"Fn::Sub": f"${{{prefix}Function}}:live"}},
    ]


def test_auth_failures_alarm_matches_emitted_dimensions(prod: dict[str, Any]) -> None:
    dimensions = {d["Name"]: d["Value"] for d in _properties(prod, "AuthFailuresAlarm")["Dimensions"]}
    service = _properties(prod, "AuthorizerFunction")["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]

    assert dimensions == {"service": service, "environment": {"Ref": "Environment"}}


def test_error_rate_alarm_uses_metric_math(prod: dict[str, Any], template: dict[str, Any]) -> None:
    alarm = _properties(prod, "ApiErrorRateAlarm")
    queries = {query["Id"]: query for query in alarm["Metrics"]}

    assert "MetricName" not in alarm
    assert queries["e1"]["Expression"] == "100*m5xx/mcount"
    assert queries["e1"]["ReturnData"] is True
    assert queries["m5xx"]["MetricStat"]["Metric"]["MetricName"] == "5XXError"
    assert queries["mcount"]["MetricStat"]["Metric"]["MetricName"] == "Count"
    for metric_id in ("m5xx", "mcount"):
        stat = queries[metric_id]["MetricStat"]
        assert stat["Metric"]["Namespace"] == "AWS/ApiGateway", metric_id
        assert stat["Stat"] == "Sum", metric_id
        assert stat["Period"] == 300, metric_id
        assert queries[metric_id]["ReturnData"] is False, metric_id
    assert alarm["AlarmName"] == {"Fn::Sub": "callflow-api-high-error-rate-${Environment}"}
    assert alarm["EvaluationPeriods"] == 2
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == {"Ref": "ApiErrorRateThresholdPercent"}
    assert template["Parameters"]["ApiErrorRateThresholdPercent"]["Default"] == 5
    assert alarm["TreatMissingData"] == "notBreaching"


def test_error_rate_alarm_reads_api_stage(prod: dict[str, Any]) -> None:
    expected = [
        {"Name": "ApiName", "Value": {"Fn::Sub": "callflow-api-${Environment}"}},
        {"Name": "Stage", "Value": {"Ref": "StageName"}},
    ]
    for query in _properties(prod, "ApiErrorRateAlarm")["Metrics"]:
        if "MetricStat" in query:
            assert query["MetricStat"]["Metric"]["Dimensions"] == expected, query["Id"]


def test_every_alarm_notifies_topic(prod: dict[str, Any]) -> None:
    alarms = resources_of_type(prod["Resources"], "AWS::CloudWatch::Alarm")

    assert len(alarms) == 12
    for logical_id, alarm in alarms.items():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == [TOPIC], logical_id
        assert properties["OKActions"] == [TOPIC], logical_id
        assert properties["TreatMissingData"] == "notBreaching", logical_id
        assert re.fullmatch(r"callflow-.+-\$\{Environment\}", properties["AlarmName"]["Fn::Sub"]), logical_id


def test_alarm_topic_key_lets_cloudwatch_publish(prod: dict[str, Any]) -> None:
    topic = _properties(prod, "AlarmTopic")
    statements = _properties(prod, "AlarmTopicKey")["KeyPolicy"]["Statement"]
    cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]

    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["AlarmTopicKey", "Arn"]}
    assert len(cloudwatch) == 1
    assert set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_alarm_email_is_optional(prod: dict[str, Any], prod_values: dict[str, str]) -> None:
    subscription = prod["Resources"]["AlarmEmailSubscription"]

    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert evaluate_condition(prod, "HasAlarmEmail", prod_values) is False
    assert evaluate_condition(prod, "HasAlarmEmail", {**prod_values, "AlarmEmail": "oncall@example.com"})


# ---------------------------------------------------------------- dashboard


@pytest.fixture(scope="module")
def dashboard(prod: dict[str, Any]) -> dict[str, Any]:
    properties = _properties(prod, "ServiceDashboard")
    assert properties["DashboardName"] == {"Fn::Sub": "callflow-service-dashboard-${Environment}"}
    return json.loads(substitute(properties["DashboardBody"]["Fn::Sub"], DASHBOARD_VARIABLES))


def _dashboard_metrics(dashboard: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    found = []
    for widget in dashboard["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            if isinstance(entry[0], str):
                namespace, name, *rest = entry
                dimensions = [item for item in rest if isinstance(item, str)]
                found.append((namespace, name, dict(zip(dimensions[::2], dimensions[1::2]))))
    return found


def _dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    return [
        entry[0]["expression"]
        for widget in dashboard["widgets"]
        for entry in widget["properties"].get("metrics", [])
        if isinstance(entry[0], dict) and "expression" in entry[0]
    ]


def test_dashboard_shows_api_metrics(dashboard: dict[str, Any]) -> None:
    api = {"ApiName": "callflow-api-prod", "Stage": "v1"}
    metric_names = {name for namespace, name, dims in _dashboard_metrics(dashboard)
             if namespace == "AWS/ApiGateway" and dims == api}

    assert metric_names == {"Count", "4XXError", "5XXError", "Latency"}


def test_dashboard_shows_latency_percentiles(dashboard: dict[str, Any]) -> None:
    stats = {
        entry[-1].get("stat")
        for widget in dashboard["widgets"]
        for entry in widget["properties"].get("metrics", [])
        if isinstance(entry[0], str) and entry[1] == "Latency"
    }

    assert stats == {"p50", "p90", "p99"}


def test_dashboard_shows_error_rate_math(dashboard: dict[str, Any]) -> None:
    assert "100 * m5xx / mcount" in _dashboard_expressions(dashboard)


@pytest.mark.parametrize("function_name", [
    "callflow-authorizer-prod", "callflow-event-storer-prod", "callflow-event-retriever-prod",
])
def test_dashboard_shows_function_by_alias(dashboard: dict[str, Any], function_name: str) -> None:
    alias = {"FunctionName": function_name, "Resource": f"{function_name}:live"}
    metric_names = {name for namespace, name, dims in _dashboard_metrics(dashboard)
             if namespace == "AWS/Lambda" and dims == alias}

    assert metric_names == {
        "Invocations", "Errors", "Duration", "Throttles",
        "ConcurrentExecutions", "ProvisionedConcurrencyUtilization",
    }


def test_dashboard_shows_bucket_metrics(dashboard: dict[str, Any]) -> None:
    bucket = DASHBOARD_VARIABLES["EventsBucket"]
    metrics = [(name, dims) for namespace, name, dims in _dashboard_metrics(dashboard) if namespace == "AWS/S3"]
    daily = {name for name, dims in metrics if dims.get("BucketName") == bucket and "StorageType" in dims}
    requests = {name for name, dims in metrics if dims == {"BucketName": bucket, "FilterId": "EntireBucket"}}

    assert daily == {"BucketSizeBytes", "NumberOfObjects"}
    assert {"GetRequests", "PutRequests", "4xxErrors", "5xxErrors"} <= requests


def test_dashboard_shows_custom_metrics(dashboard: dict[str, Any]) -> None:
    custom = {(name, dims["service"]) for namespace, name, dims in _dashboard_metrics(dashboard)
              if namespace == "Callflow" and dims.get("environment") == "prod"}

    assert custom == {
        ("EventsStored", "callflow-event-storer"),
        ("BytesStored", "callflow-event-storer"),
        ("DuplicatesSkipped", "callflow-event-storer"),
        ("Conflicts", "callflow-event-storer"),
        ("AuthorizationFailures", "callflow-authorizer"),
        ("ObjectsScanned", "callflow-event-retriever"),
    }


def test_dashboard_splits_auth_failures_by_reason(dashboard: dict[str, Any]) -> None:
    searches = [e for e in _dashboard_expressions(dashboard) if e.startswith("SEARCH(")]

    assert len(searches) == 1
    assert "failureReason" in searches[0]
    assert 'MetricName="AuthorizationFailures"' in searches[0]


def test_dashboard_widgets_name_their_region(dashboard: dict[str, Any]) -> None:
    for widget in dashboard["widgets"]:
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == REGION, widget["properties"]["title"]


# ---------------------------------------------------------------- logs and tracing


def test_every_log_group_has_retention(prod: dict[str, Any]) -> None:
    groups = resources_of_type(prod["Resources"], "AWS::Logs::LogGroup")

    assert len(groups) == 4
    for logical_id, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, logical_id


def test_log_retention_allows_cloudwatch_values(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["LogRetentionDays"]

    assert parameter["Default"] == 30
    assert parameter["AllowedValues"] == [
        1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545,
        731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
    ]


@pytest.mark.parametrize("prefix", FUNCTIONS)
def test_function_logs_to_its_log_group(prod: dict[str, Any], prefix: str) -> None:
    function = _properties(prod, f"{prefix}Function")
    log_group_ref = function["LoggingConfig"]["LogGroup"]
    log_group = _properties(prod, log_group_ref["Ref"])

    assert function["FunctionName"] == {"Fn::Sub": FUNCTIONS[prefix]}
    assert log_group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/{FUNCTIONS[prefix]}"}


def test_access_log_group_named_for_api(prod: dict[str, Any]) -> None:
    stage = _properties(prod, "CallflowApiStage")

    assert stage["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert _properties(prod, "ApiAccessLogGroup")["LogGroupName"] == {
        "Fn::Sub": "/aws/apigateway/callflow-api-${Environment}"
    }


def test_access_log_format_is_json(prod: dict[str, Any]) -> None:
    log_format = _properties(prod, "CallflowApiStage")["AccessLogSetting"]["Format"]
    sample = json.loads(CONTEXT_VARIABLE.sub("7", log_format))

    assert ACCESS_LOG_FIELDS <= set(sample)


def test_access_log_quotes_optional_values(prod: dict[str, Any]) -> None:
    # A value API Gateway writes as "-" would break the JSON line if unquoted.
    log_format = _properties(prod, "CallflowApiStage")["AccessLogSetting"]["Format"]

    assert set(UNQUOTED_CONTEXT_VARIABLE.findall(log_format)) <= ALWAYS_NUMERIC_CONTEXT_VARIABLES


def test_api_account_role_is_optional(prod: dict[str, Any], prod_values: dict[str, str]) -> None:
    role = prod["Resources"]["ApiGatewayCloudWatchRole"]
    account = prod["Resources"]["ApiGatewayAccount"]
    created = {**prod_values, "CreateApiGatewayAccountRole": "true"}

    assert role["Condition"] == account["Condition"] == "CreateApiGatewayAccount"
    assert role["Properties"]["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}
    ]
    assert evaluate_condition(prod, "CreateApiGatewayAccount", prod_values) is False
    assert evaluate_condition(prod, "CreateApiGatewayAccount", created) is True


def test_api_waits_for_account_role(prod: dict[str, Any]) -> None:
    handle = prod["Resources"]["ApiGatewayAccountReady"]

    assert "ApiGatewayAccountReady" in prod["Resources"]["CallflowApi"]["DependsOn"]
    assert handle["Metadata"]["AccountSettings"]["Fn::If"][:2] == [
        "CreateApiGatewayAccount", {"Ref": "ApiGatewayAccount"},
    ]


def test_functions_and_stage_trace_with_xray(prod: dict[str, Any]) -> None:
    functions = resources_of_type(prod["Resources"], "AWS::Lambda::Function")

    assert _properties(prod, "CallflowApiStage")["TracingEnabled"] is True
    for logical_id, function in functions.items():
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}, logical_id


# ---------------------------------------------------------------- saved queries


@pytest.mark.parametrize(("logical_id", "log_groups", "fields"), [
    ("ErrorsQuery", ["AuthorizerLogGroup", "StorerLogGroup", "RetrieverLogGroup"],
     ['level = "ERROR"', "Task timed out"]),
    ("ColdStartsQuery", ["AuthorizerLogGroup", "StorerLogGroup", "RetrieverLogGroup"],
     ['@type = "REPORT"', "Init Duration", "@initDuration", "bin("]),
    ("LatencyByEndpointQuery", ["ApiAccessLogGroup"],
     ["responseLatency", "httpMethod", "resourcePath", "pct("]),
    ("AuthFailuresQuery", ["AuthorizerLogGroup"],
     ['authResult = "DENY"', "by failureReason"]),
    ("EventProcessingQuery", ["StorerLogGroup"],
     ['"Event stored"', '"Duplicate event skipped"', '"Event conflict"', "processingTimeMs", "eventSize"]),
])
def test_saved_query_reads_json_fields(
    prod: dict[str, Any], logical_id: str, log_groups: list[str], fields: list[str],
) -> None:
    query = prod["Resources"][logical_id]
    text = query["Properties"]["QueryString"]

    assert query["Condition"] == "IsAws"
    assert query["Properties"]["LogGroupNames"] == [{"Ref": group} for group in log_groups]
    assert "parse " not in text
    for field in fields:
        assert field in text, field


# ---------------------------------------------------------------- API wiring


def _integration_uris(body: Any) -> list[Any]:
    found = []
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "x-amazon-apigateway-integration":
                found.append(value["uri"])
            elif key == "x-amazon-apigateway-authorizer":
                found.append(value["authorizerUri"])
            else:
                found += _integration_uris(value)
    elif isinstance(body, list):
        for item in body:
            found += _integration_uris(item)
    return found


def test_gateway_responses_carry_request_id(prod: dict[str, Any]) -> None:
    responses = _properties(prod, "CallflowApi")["Body"]["x-amazon-apigateway-gateway-responses"]

    assert len(responses) >= 10
    for name, response in responses.items():
        body = response["responseTemplates"]["application/json"]
        # Fill API Gateway's variables with JSON-safe values, then parse.
        rendered = re.sub(r"\$context\.error\.messageString", '"a message"', body)
        rendered = re.sub(r"\$context\.[A-Za-z.]+", "x", rendered)
        document = json.loads(rendered)
        assert set(document) >= {"code", "message", "requestId"}, name
        assert '"requestId":"$context.requestId"' in body, name
        # Compact, as the functions write their error bodies.
        assert rendered == json.dumps(document, separators=(",", ":"), ensure_ascii=False), name


def test_api_invokes_live_aliases(prod: dict[str, Any]) -> None:
    uris = _integration_uris(_properties(prod, "CallflowApi")["Body"])

    # five routes and the authorizer
    assert len(uris) == 6
    for uri in uris:
        assert "$LATEST" not in uri["Fn::Sub"]
        referenced = _sub_variables(uri) - {"AWS::Partition", "AWS::Region"}
        assert len(referenced) == 1, uri
        alias = prod["Resources"][referenced.pop()]
        assert alias["Type"] == "AWS::Lambda::Alias"
        assert alias["Properties"]["Name"] == "live"


def test_permissions_target_live_aliases(prod: dict[str, Any]) -> None:
    permissions = resources_of_type(prod["Resources"], "AWS::Lambda::Permission")

    assert len(permissions) == 3
    for logical_id, permission in permissions.items():
        target = prod["Resources"][permission["Properties"]["FunctionName"]["Ref"]]
        assert target["Type"] == "AWS::Lambda::Alias", logical_id
        assert target["Properties"]["Name"] == "live", logical_id


def test_stage_throttles_from_parameters(prod: dict[str, Any], template: dict[str, Any]) -> None:
    stage_wide = _properties(prod, "CallflowApiStage")["MethodSettings"][0]

    assert (stage_wide["ResourcePath"], stage_wide["HttpMethod"]) == ("/*", "*")
    assert stage_wide["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    assert stage_wide["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert template["Parameters"]["ApiThrottlingBurstLimit"]["Default"] == 500
    assert template["Parameters"]["ApiThrottlingRateLimit"]["Default"] == 1000
    assert stage_wide["DataTraceEnabled"] is False


def test_api_compresses_large_responses(prod: dict[str, Any]) -> None:
    assert _properties(prod, "CallflowApi")["MinimumCompressionSize"] == 1024


def test_cache_covers_only_list_events(prod: dict[str, Any], template: dict[str, Any]) -> None:
    stage = _properties(prod, "CallflowApiStage")
    condition, cached, otherwise = stage["MethodSettings"][1]["Fn::If"]

    assert template["Parameters"]["ApiCacheEnabled"]["Default"] == "false"
    assert condition == "UseApiCache"
    assert (cached["ResourcePath"], cached["HttpMethod"]) == ("/~1events", "GET")
    assert cached["CachingEnabled"] is True
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert stage["CacheClusterEnabled"] == {"Fn::If": ["UseApiCache", True, False]}


def test_cache_keys_on_every_query_parameter(prod: dict[str, Any]) -> None:
    operation = _properties(prod, "CallflowApi")["Body"]["paths"]["/events"]["get"]
    query_parameters = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    cache_keys = operation["x-amazon-apigateway-integration"]["cacheKeyParameters"]

    assert set(cache_keys) == {f"method.request.querystring.{name}" for name in query_parameters}


# ---------------------------------------------------------------- deployment safety


@pytest.mark.parametrize("prefix", GRADUALLY_DEPLOYED)
def test_deployment_group_rolls_back_on_alarms(prod: dict[str, Any], prefix: str) -> None:
    group = _properties(prod, f"{prefix}FunctionDeploymentGroup")
    alias = prod["Resources"][f"{prefix}FunctionAliaslive"]

    assert group["AlarmConfiguration"]["Enabled"] is True
    assert group["AlarmConfiguration"]["Alarms"] == [
        {"Name": {"Ref": f"{prefix}ErrorsAlarm"}},
        {"Name": {"Ref": f"{prefix}DurationAlarm"}},
    ]
    assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
    assert group["DeploymentConfigName"]["Fn::Sub"][1] == {"ConfigName": "Canary10Percent5Minutes"}
    assert alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"] == {
        "Ref": f"{prefix}FunctionDeploymentGroup"
    }


def test_only_storer_and_retriever_deploy_gradually(prod: dict[str, Any]) -> None:
    groups = resources_of_type(prod["Resources"], "AWS::CodeDeploy::DeploymentGroup")

    assert set(groups) == {f"{prefix}FunctionDeploymentGroup" for prefix in GRADUALLY_DEPLOYED}


def test_gradual_deployment_off_creates_no_codedeploy() -> None:
    transformed = transform_template({"Environment": "dev", "GradualDeployment": "false"})
    types = {resource["Type"] for resource in transformed["Resources"].values()}

    assert not {t for t in types if t.startswith("AWS::CodeDeploy::")}
    for prefix in FUNCTIONS:
        assert "UpdatePolicy" not in transformed["Resources"][f"{prefix}FunctionAliaslive"], prefix


@pytest.mark.parametrize("prefix", FUNCTIONS)
def test_live_alias_gets_provisioned_concurrency(
    prod: dict[str, Any], prod_values: dict[str, str], local_values: dict[str, str], prefix: str,
) -> None:
    config = _properties(prod, f"{prefix}FunctionAliaslive")["ProvisionedConcurrencyConfig"]
    condition = f"Has{prefix}ProvisionedConcurrency"

    assert config == {"Fn::If": [
        condition,
        {"ProvisionedConcurrentExecutions": {"Ref": f"{prefix}ProvisionedConcurrency"}},
        {"Ref": "AWS::NoValue"},
    ]}
    assert evaluate_condition(prod, condition, prod_values) is True
    assert evaluate_condition(prod, condition, local_values) is False


@pytest.mark.parametrize("prefix", FUNCTIONS)
def test_provisioned_concurrency_autoscales(
    prod: dict[str, Any], prod_values: dict[str, str], prefix: str,
) -> None:
    target = prod["Resources"][f"{prefix}ConcurrencyTarget"]
    policy = prod["Resources"][f"{prefix}ConcurrencyScalingPolicy"]
    tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]

    assert target["Condition"] == policy["Condition"] == f"Scale{prefix}Concurrency"
    assert evaluate_condition(prod, target["Condition"], prod_values) is True
    assert target["Properties"]["ResourceId"] == {"Fn::Sub": f"function:${{{prefix}Function}}:live"}
    assert target["Properties"]["ScalableDimension"] == "lambda:function:ProvisionedConcurrency"
    assert target["Properties"]["MinCapacity"] == {"Ref": f"{prefix}ProvisionedConcurrency"}
    assert target["Properties"]["MaxCapacity"] == {"Ref": f"{prefix}ProvisionedConcurrencyMax"}
    assert policy["Properties"]["ScalingTargetId"] == {"Ref": f"{prefix}ConcurrencyTarget"}
    assert tracking["TargetValue"] == 0.7
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "LambdaProvisionedConcurrencyUtilization"
    )


@pytest.mark.parametrize(("reserved", "applied"), [("", False), ("0", False), ("25", True)])
def test_reserved_concurrency_zero_means_unreserved(
    prod: dict[str, Any], prod_values: dict[str, str], reserved: str, applied: bool,
) -> None:
    values = {**prod_values, "StorerReservedConcurrency": reserved}

    assert _properties(prod, "StorerFunction")["ReservedConcurrentExecutions"]["Fn::If"][0] == (
        "HasStorerReservedConcurrency"
    )
    assert evaluate_condition(prod, "HasStorerReservedConcurrency", values) is applied


# ---------------------------------------------------------------- bucket


def test_bucket_publishes_request_metrics(prod: dict[str, Any]) -> None:
    assert _properties(prod, "EventsBucket")["MetricsConfigurations"] == [{"Id": "EntireBucket"}]


def test_lifecycle_keeps_events_readable(prod: dict[str, Any]) -> None:
    rules = _properties(prod, "EventsBucket")["LifecycleConfiguration"]["Rules"]
    aging = next(rule for rule in rules if rule["Id"] == "AgeEventsAndIndex")

    assert aging["Transitions"] == [
        {"StorageClass": "STANDARD_IA", "TransitionInDays": {"Ref": "EventsTransitionToIaDays"}},
        {"StorageClass": "GLACIER_IR", "TransitionInDays": {"Ref": "EventsTransitionToGlacierIrDays"}},
    ]
    assert aging["ExpirationInDays"]["Fn::If"][:2] == ["ExpireEvents", {"Ref": "EventsExpirationDays"}]
    assert aging["NoncurrentVersionExpiration"] == {"NoncurrentDays": {"Ref": "NoncurrentVersionExpirationDays"}}


def test_lifecycle_defaults(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]

    assert parameters["EventsTransitionToIaDays"]["Default"] == 30
    assert parameters["EventsTransitionToGlacierIrDays"]["Default"] == 90
    assert parameters["EventsExpirationDays"]["Default"] == 365


def test_replication_is_optional_and_scoped(prod: dict[str, Any], prod_values: dict[str, str]) -> None:
    replication = _properties(prod, "EventsBucket")["ReplicationConfiguration"]
    role = prod["Resources"]["EventsReplicationRole"]
    statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    actions = [action for statement in statements for action in statement["Action"]]
    enabled = {**prod_values, "ReplicationDestinationBucketArn": "arn:aws:s3:::callflow-replica"}

    assert replication["Fn::If"][0] == "UseReplication"
    assert role["Condition"] == "UseReplication"
    assert evaluate_condition(prod, "UseReplication", prod_values) is False
    assert evaluate_condition(prod, "UseReplication", enabled) is True
    assert all("*" not in action for action in actions)
    assert "s3:ReplicateDelete" not in actions


def test_transfer_acceleration_is_optional(prod: dict[str, Any], prod_values: dict[str, str]) -> None:
    acceleration = _properties(prod, "EventsBucket")["AccelerateConfiguration"]

    assert acceleration["Fn::If"][:2] == ["UseTransferAcceleration", {"AccelerationStatus": "Enabled"}]
    assert evaluate_condition(prod, "UseTransferAcceleration", prod_values) is False


# ---------------------------------------------------------------- local emulator


def _emulator_problems(resources: dict[str, Any]) -> list[str]:
    problems = [
        f"{logical_id} ({resource['Type']})"
        for logical_id, resource in resources.items()
        if resource["Type"] in EMULATOR_REJECTED_TYPES
    ]
    problems += [
        f"{logical_id} (metric-math alarm)"
        for logical_id, resource in resources_of_type(resources, "AWS::CloudWatch::Alarm").items()
        if "Metrics" in resource["Properties"]
    ]
    return problems


def test_local_stack_avoids_emulator_gaps(local_values: dict[str, str]) -> None:
    # The emulator transforms with no parameter values, then applies the
    # deploy's values to the conditions.
    transformed = transform_like_emulator()

    assert _emulator_problems(created_resources(transformed, local_values)) == []


def test_local_parameters_avoid_emulator_gaps(local_values: dict[str, str]) -> None:
    transformed = transform_template(samconfig_overrides("local"))

    assert _emulator_problems(created_resources(transformed, local_values)) == []


def test_prod_stack_uses_aws_only_features(prod: dict[str, Any], prod_values: dict[str, str]) -> None:
    # The check above must be able to fail: prod creates each rejected kind.
    problems = " ".join(_emulator_problems(created_resources(prod, prod_values)))

    for kind in ("AWS::ApplicationAutoScaling::ScalableTarget", "AWS::CodeDeploy::DeploymentGroup",
                 "AWS::Logs::QueryDefinition", "metric-math alarm"):
        assert kind in problems, kind
