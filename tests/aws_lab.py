"""AWS for the tests: moto in server mode, on the lab's services address, so namespace hosts download presigned
URLs from it as they would from S3, while the bot's boto3 clients reach it through AWS_ENDPOINT_URL.

Nothing here replaces boto3: the bot's own clients speak HTTP to moto's server. What moto cannot do (compute an
alarm's state from metrics, check a presigned URL's signature or expiry) is said in docs/aws.md; alarm states are
driven with set_alarm_state, as an operator or CloudWatch would change them.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_server(lab) -> Iterator[str]:
    """moto's server for the session, on the address every lab host routes to; yields its base URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # its request log would print every presigned URL
    server = ThreadedMotoServer(ip_address=lab.services_address, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class Cloud:
    """The test's side of AWS: boto3 clients on moto's server, and the few set-ups the tests need."""

    def __init__(self, url: str):
        import boto3

        self.url = url
        self.s3, self.ec2, self.cloudwatch, self.secrets = (
            boto3.client(name, endpoint_url=url, region_name="us-east-1")
            for name in ("s3", "ec2", "cloudwatch", "secretsmanager")
        )

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=10)

    def upload(self, bucket: str, key: str, file: Path, sha256: str | None = None) -> None:
        """Put `file` at s3://bucket/key, with x-amz-meta-sha256 when `sha256` is given."""
        if bucket not in [b["Name"] for b in self.s3.list_buckets()["Buckets"]]:
            self.s3.create_bucket(Bucket=bucket)
        extra = {"Metadata": {"sha256": sha256}} if sha256 else {}
        self.s3.put_object(Bucket=bucket, Key=key, Body=file.read_bytes(), **extra)

    def instances(self, addresses: list[str], tags: dict[str, str], net: str) -> list[str]:
        """One instance per private address (in a VPC covering the lab's 10.x.0.0/16), tagged; their ids."""
        vpcs = self.ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": [f"{net}.0.0/16"]}])["Vpcs"]
        vpc = vpcs[0]["VpcId"] if vpcs else self.ec2.create_vpc(CidrBlock=f"{net}.0.0/16")["Vpc"]["VpcId"]
        subnets = self.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
        subnet = (
            subnets[0]["SubnetId"]
            if subnets
            else self.ec2.create_subnet(VpcId=vpc, CidrBlock=f"{net}.0.0/16")["Subnet"]["SubnetId"]
        )
        image = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ids = []
        for address in addresses:
            made = self.ec2.run_instances(
                ImageId=image,
                MinCount=1,
                MaxCount=1,
                SubnetId=subnet,
                PrivateIpAddress=address,
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
                ],
            )
            ids.append(made["Instances"][0]["InstanceId"])
        return ids

    def alarm(self, name: str) -> None:
        """A metric alarm (INSUFFICIENT_DATA until set_alarm moves it: moto does not evaluate metrics)."""
        self.cloudwatch.put_metric_alarm(
            AlarmName=name,
            MetricName="5XXError",
            Namespace="AWS/ApplicationELB",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=5,
            ComparisonOperator="GreaterThanThreshold",
        )

    def set_alarm(self, name: str, state: str, reason: str) -> None:
        self.cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)

    def secret(self, name: str, values: dict[str, str]) -> None:
        self.secrets.create_secret(Name=name, SecretString=json.dumps(values))


@pytest.fixture
def aws(moto_server, monkeypatch) -> Cloud:
    """A fresh moto state, and the environment boto3 reads in this process and in the CLI's: moto's endpoint and
    fake credentials (no real AWS is ever asked)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": moto_server}.items():
        monkeypatch.setenv(name, value)
    cloud = Cloud(moto_server)
    cloud.reset()
    return cloud


@pytest.fixture
def presigned(monkeypatch) -> list[str]:
    """Every presigned URL the bot signs in this process (artifact GETs, backup PUTs and GETs), in order: what a
    test looks for in the places none may show up (a host's process list, the logs, Slack)."""
    from bot.aws import backups, s3

    urls: list[str] = []

    def recording(sign):
        def signed(*args, **kwargs) -> str:
            urls.append(url := sign(*args, **kwargs))
            return url

        return signed

    monkeypatch.setattr(s3, "presigned_url", recording(s3.presigned_url))
    monkeypatch.setattr(backups, "presigned", recording(backups.presigned))
    return urls
