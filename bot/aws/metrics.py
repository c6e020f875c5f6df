"""deploybot's own metrics in CloudWatch (`aws: {metrics: {namespace: deploybot}}`): one deployment's duration and
outcome, published when it ends, so a dashboard or an alarm ("failed deploys to prod") needs nothing else."""

from __future__ import annotations

from bot.aws.config import AWSSettings
from bot.aws.session import asking, client

DURATION, COUNT = "DeploymentSeconds", "Deployments"


def publish_deployment(
    settings: AWSSettings, namespace: str, environment: str, kind: str, outcome: str, seconds: float
) -> None:
    """DeploymentSeconds {Environment, Kind} and Deployments = 1 {Environment, Kind, Outcome}, in one call."""
    where = [{"Name": "Environment", "Value": environment}, {"Name": "Kind", "Value": kind}]
    data = [
        {"MetricName": DURATION, "Dimensions": where, "Value": round(seconds, 3), "Unit": "Seconds"},
        {
            "MetricName": COUNT,
            "Dimensions": [*where, {"Name": "Outcome", "Value": outcome}],
            "Value": 1.0,
            "Unit": "Count",
        },
    ]
    with asking(f"publishing the metrics of a {kind} to {environment} to CloudWatch ({namespace})"):
        client("cloudwatch", settings).put_metric_data(Namespace=namespace, MetricData=data)
