"""deploybot's own metrics in CloudWatch (`aws: {metrics: {namespace: ...}}`): after real deploys to a namespace
host, moto's server (tests/aws_lab.py) holds each deployment's duration and outcome, as CloudWatch would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import yaml

from bot.domain import State

pytest_plugins = ("tests.aws_lab",)  # the moto_server and aws fixtures


def test_each_deployment_publishes_its_duration_and_outcome(hosts, aws, make_config, service):
    one = hosts[:1]
    config = make_config(one, health={"timeout": 2})
    data = yaml.safe_load(config.read_text())
    data["aws"] = {"metrics": {"namespace": "deploybot-test"}}
    config.write_text(yaml.safe_dump(data))
    svc = service(config)
    ok = svc.deploy("prod", "v1.0.0", "cli:test")
    assert ok.state is State.SUCCEEDED, ok.error
    bad = svc.deploy("prod", "v1.9.0", "cli:test")  # fails its health check: rolled back
    assert bad.state is State.ROLLED_BACK

    found = aws.cloudwatch.list_metrics(Namespace="deploybot-test")["Metrics"]
    shapes = sorted({(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in found})
    assert shapes == [
        ("DeploymentSeconds", (("Environment", "prod"), ("Kind", "deploy"))),
        ("Deployments", (("Environment", "prod"), ("Kind", "deploy"), ("Outcome", "rolled_back"))),
        ("Deployments", (("Environment", "prod"), ("Kind", "deploy"), ("Outcome", "succeeded"))),
    ]
    now = datetime.now(UTC)
    window = {"StartTime": now - timedelta(minutes=10), "EndTime": now + timedelta(minutes=1), "Period": 3600}
    seconds = aws.cloudwatch.get_metric_statistics(
        Namespace="deploybot-test",
        MetricName="DeploymentSeconds",
        Dimensions=[{"Name": "Environment", "Value": "prod"}, {"Name": "Kind", "Value": "deploy"}],
        Statistics=["SampleCount", "Maximum"],
        **window,
    )["Datapoints"]
    assert [p["SampleCount"] for p in seconds] == [2.0]
    assert seconds[0]["Unit"] == "Seconds" and 0 < seconds[0]["Maximum"] < 120
    for outcome in ("succeeded", "rolled_back"):
        count = aws.cloudwatch.get_metric_statistics(
            Namespace="deploybot-test",
            MetricName="Deployments",
            Dimensions=[
                {"Name": "Environment", "Value": "prod"},
                {"Name": "Kind", "Value": "deploy"},
                {"Name": "Outcome", "Value": outcome},
            ],
            Statistics=["Sum"],
            **window,
        )["Datapoints"]
        assert [p["Sum"] for p in count] == [1.0], outcome
