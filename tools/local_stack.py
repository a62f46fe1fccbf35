"""Build and deploy the real template into a running local emulator, and read its outputs.

    python tools/local_stack.py deploy [--stack-name callflow-local]
    python tools/local_stack.py url
    python tools/local_stack.py outputs

AWS_ENDPOINT_URL must point at the emulator (the Makefile sets it). `deploy`
runs `sam build` with CALLFLOW_BUILD_TARGET=local, so the layer contains wheels
for this machine's Python, then `sam deploy --config-env local`.

The emulator's OpenAPI import skips `x-amazon-apigateway-gateway-responses`,
so after deploying, this tool copies the gateway responses from the template's
OpenAPI body into the emulator's API and redeploys the stage. On AWS, API
Gateway imports them with the body and this step is not needed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STACK_NAME = "callflow-local"
ARTIFACT_BUCKET = "callflow-local-sam-artifacts"
API_LOGICAL_ID = "CallflowApi"


def _require_endpoint() -> str:
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if not endpoint.startswith("http://127.0.0.1:"):
        raise SystemExit(
            "error: AWS_ENDPOINT_URL must point at the local emulator "
            f"(http://127.0.0.1:PORT), not {endpoint!r}; run this through `make local`"
        )
    return endpoint


def _client(service: str) -> Any:
    import boto3

    # The region boto3 resolves (AWS_DEFAULT_REGION or the profile), else
    # us-east-1, because the emulator accepts any region.
    session = boto3.session.Session()
    return session.client(service, region_name=session.region_name or "us-east-1")


def describe_stack(stack_name: str) -> dict[str, Any]:
    """Return the stack's DescribeStacks entry. Exit with a message when the call fails."""
    from botocore.exceptions import ClientError, EndpointConnectionError

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the default AWS endpoint"
    try:
        return _client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    except EndpointConnectionError as error:
        raise SystemExit(
            f"error: connecting to {endpoint} failed. Start the emulator with `make local`."
        ) from error
    except ClientError as error:
        raise SystemExit(
            f"error: stack {stack_name} was not found on {endpoint} "
            f"({error.response['Error'].get('Message', error)}). Run `make local` first."
        ) from error


def stack_outputs(stack_name: str) -> dict[str, str]:
    """Return the stack's Outputs as a name -> value mapping."""
    stack = describe_stack(stack_name)
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def local_base_url(outputs: dict[str, str]) -> str:
    """Return the base URL the emulator serves the API stage at."""
    endpoint = _require_endpoint().rstrip("/")
    return f"{endpoint}/_aws/execute-api/{outputs['ApiId']}/{outputs['StageName']}"


def _run(command: list[str], extra_env: dict[str, str] | None = None) -> None:
    print("+ " + " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, **(extra_env or {})})
    if result.returncode != 0:
        raise SystemExit(f"error: `{' '.join(command)}` failed with exit code {result.returncode}")


def _gateway_responses(template_path: Path) -> dict[str, dict[str, Any]]:
    from samcli.yamlhelper import yaml_parse

    template = yaml_parse(template_path.read_text())
    body = template["Resources"][API_LOGICAL_ID]["Properties"]["DefinitionBody"]
    return body.get("x-amazon-apigateway-gateway-responses", {})


def apply_gateway_responses(api_id: str, stage_name: str, template_path: Path) -> int:
    """Copy the OpenAPI body's gateway responses into the emulator's API and redeploy."""
    apigateway = _client("apigateway")
    responses = _gateway_responses(template_path)
    for response_type, response in responses.items():
        arguments: dict[str, Any] = {
            "restApiId": api_id,
            "responseType": response_type,
            "responseTemplates": response.get("responseTemplates", {}),
        }
        if "statusCode" in response:
            arguments["statusCode"] = str(response["statusCode"])
        if "responseParameters" in response:
            arguments["responseParameters"] = response["responseParameters"]
        apigateway.put_gateway_response(**arguments)
    apigateway.create_deployment(
        restApiId=api_id, stageName=stage_name, description="gateway responses from the OpenAPI body"
    )
    return len(responses)


def deploy(stack_name: str, build_dir: Path) -> int:
    """Build for the local target, deploy the stack, and print how to call it."""
    _require_endpoint()
    from botocore.exceptions import ClientError

    s3 = _client("s3")
    try:
        s3.head_bucket(Bucket=ARTIFACT_BUCKET)
    except ClientError:
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)

    sam = str(ROOT / ".venv" / "bin" / "sam")
    build_env = {"CALLFLOW_BUILD_TARGET": "local", "PYTHON": sys.executable}
    # An explicit --config-file, because with --template-file sam looks for
    # samconfig.toml beside the built template instead of in the project.
    config = ["--config-file", str(ROOT / "samconfig.toml"), "--config-env", "local"]
    _run([sam, "build", *config, "--build-dir", str(build_dir)], build_env)
    _run([
        sam, "deploy", *config, "--stack-name", stack_name,
        "--template-file", str(build_dir / "template.yaml"), "--no-progressbar",
    ])

    outputs = stack_outputs(stack_name)
    count = apply_gateway_responses(outputs["ApiId"], outputs["StageName"], ROOT / "template.yaml")
    print(f"applied {count} gateway responses to the emulator's API {outputs['ApiId']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["deploy", "url", "outputs"])
    parser.add_argument("--stack-name", default=os.environ.get("CALLFLOW_STACK_NAME", DEFAULT_STACK_NAME),
                        help="CloudFormation stack name (default: $CALLFLOW_STACK_NAME or callflow-local)")
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "local",
                        help="where `sam build` writes the local build (default .aws-sam/local)")
    args = parser.parse_args(argv)

    if args.command == "deploy":
        return deploy(args.stack_name, args.build_dir.resolve())
    outputs = stack_outputs(args.stack_name)
    if args.command == "url":
        print(local_base_url(outputs))
    else:
        print(json.dumps({**outputs, "LocalApiBaseUrl": local_base_url(outputs)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
