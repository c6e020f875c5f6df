"""An ALB/NLB target group as the balancer of a rolling deploy (`traffic: {balancer: target-group}`), against moto's
server (tests/aws_lab.py) and the namespace hosts: the bot's boto3 clients deregister and register the EC2
instances the hosts stand for, and the test reads moto's target health at every step of every batch.

moto does not drain connections nor run health checks: a deregistered target reads `unused` at once and a
registered one `healthy` (docs/aws.md). So these tests show the order of the calls and the group's state between
steps, not that requests in flight finished (tests/test_zero_downtime.py shows that with HAProxy and nginx)."""

from __future__ import annotations

import boto3
import pytest
import yaml

from bot.aws.config import AWSSettings
from bot.config import ConfigError, load_config, parse_config
from bot.config_check import problems
from bot.domain import State
from bot.engine.events import StageFinished
from bot.host import Host
from bot.traffic.base import Backend, TrafficError
from bot.traffic.target_group import TargetGroupTraffic

pytest_plugins = ("tests.aws_lab",)  # the moto_server and aws fixtures

TAGS = {"App": "sampleapp", "Env": "prod"}


def elb(aws):
    return boto3.client("elbv2", endpoint_url=aws.url, region_name="us-east-1")


def target_group(aws, lab, kind: str = "instance", delay: int = 2) -> str:
    """A target group in the VPC of the lab's instances, with a short deregistration delay; its ARN."""
    vpcs = aws.ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": [f"{lab.net}.0.0/16"]}])["Vpcs"]
    vpc = vpcs[0]["VpcId"] if vpcs else aws.ec2.create_vpc(CidrBlock=f"{lab.net}.0.0/16")["Vpc"]["VpcId"]
    arn = elb(aws).create_target_group(
        Name=f"sampleapp-{kind}", Protocol="HTTP", Port=8000, VpcId=vpc, TargetType=kind, HealthCheckPath="/health"
    )["TargetGroups"][0]["TargetGroupArn"]
    elb(aws).modify_target_group_attributes(
        TargetGroupArn=arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(delay)}]
    )
    return arn


def registered(aws, arn: str) -> dict[str, str]:
    """What moto's group holds now: target id -> state."""
    rows = elb(aws).describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    return {r["Target"]["Id"]: r["TargetHealth"]["State"] for r in rows}


class Watch:
    """An event subscriber: after every host's drain, switch, health, restore and revert, what moto's group holds."""

    STAGES = ("drain", "switch", "health", "restore", "revert")

    def __init__(self, aws, arn: str):
        self.aws, self.arn, self.seen = aws, arn, []

    def __call__(self, event) -> None:
        if isinstance(event, StageFinished) and event.host and event.stage in self.STAGES:
            self.seen.append((event.stage, event.host, event.ok, sorted(registered(self.aws, self.arn))))

    def take(self) -> list:
        seen, self.seen = self.seen, []
        return seen


def test_a_rolling_deploy_deregisters_deploys_and_registers_each_batch_in_order_and_a_failed_batch_comes_back(
    hosts, aws, lab, make_config, service
):
    three = hosts[:3]
    made = aws.instances([h.address for h in three], TAGS, lab.net)
    host_of = dict(zip(made, three, strict=True))
    ids = sorted(made)  # EC2 hosts are named by instance id, and batches follow the names
    arn = target_group(aws, lab)
    elb(aws).register_targets(TargetGroupArn=arn, Targets=[{"Id": i, "Port": 8000} for i in ids])
    traffic = {"balancer": "target-group", "target_group_arn": arn, "port": 8000, "drain_timeout": 10}
    config = make_config(three, strategy={"kind": "rolling", "batch_size": 1}, traffic=traffic)
    data = yaml.safe_load(config.read_text())
    data["environments"]["prod"]["hosts"] = {"ec2": {"tags": TAGS, "user": "root"}}  # the hosts: by their tags
    config.write_text(yaml.safe_dump(data))
    assert problems(load_config(config)) == []  # batches of EC2 hosts are only known when planned
    svc = service(config)
    plan = "\n".join(svc.requests.describe_plan("prod", "v1.0.0", "cli:test"))
    assert f"take {ids[0]} out of target group {arn}" in plan and "until it is healthy" in plan
    watch = Watch(aws, arn)
    svc.events.subscribe(watch)

    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    watch.take()  # a first deploy drains nothing (nothing served)

    dep = svc.deploy("prod", "v1.1.0", "cli:test")
    assert dep.state is State.SUCCEEDED, dep.error
    expected = []
    for i in ids:  # batch by batch, in order: out, switched and healthy while out, back; the other two stay in
        rest = sorted(set(ids) - {i})
        expected += [("drain", i, True, rest), ("switch", i, True, rest), ("health", i, True, rest)]
        expected += [("restore", i, True, sorted(ids))]
    assert watch.take() == expected
    assert registered(aws, arn) == {i: "healthy" for i in ids}
    assert [s.host for s in svc.store.stages(dep.id) if s.stage == "drain"] == ids
    assert [h.answering() for h in three] == ["v1.1.0"] * 3

    second = host_of[ids[1]]
    with (second.srv / "app" / "shared" / ".env").open("a") as f:
        f.write("UNHEALTHY_VERSIONS=v1.2.0\n")  # the second batch fails its health check
    dep = svc.deploy("prod", "v1.2.0", "cli:test")
    assert dep.state is State.ROLLED_BACK and dep.failed_host == ids[1], dep.error
    seen = watch.take()
    first_two = [("drain", ids[0]), ("switch", ids[0]), ("health", ids[0]), ("restore", ids[0])]
    first_two += [("drain", ids[1]), ("switch", ids[1]), ("health", ids[1])]
    assert [(stage, host) for stage, host, *_ in seen[:7]] == first_two
    assert seen[6] == ("health", ids[1], False, sorted({ids[0], ids[2]}))  # failed while out of the group
    # reverted: the failed batch first (it serves nobody meanwhile), then the one before it; each back in after
    assert seen[7:] == [("revert", ids[1], True, sorted(ids)), ("revert", ids[0], True, sorted(ids))]
    assert min(len(group) for *_, group in seen) == 2  # never more than one batch out at once
    assert registered(aws, arn) == {i: "healthy" for i in ids}
    assert [h.answering() for h in three] == ["v1.1.0"] * 3
    assert not any(ids[2] == host for _, host, *_ in seen)  # the third batch was never touched

    back = svc.rollback("prod", "cli:test", "v1.0.0")  # behind a balancer a rollback goes batch by batch too
    assert back.state is State.SUCCEEDED, back.error
    assert [(stage, host) for stage, host, _, _ in watch.take() if stage in ("drain", "restore")] == [
        (stage, i) for i in ids for stage in ("drain", "restore")
    ]
    assert registered(aws, arn) == {i: "healthy" for i in ids}
    assert [h.answering() for h in three] == ["v1.0.0"] * 3


def test_hosts_without_an_instance_id_register_by_address_and_refusals_name_the_group(hosts, aws, lab):
    two = [Host(name=h.name, address=h.address) for h in hosts[:2]]
    arn = target_group(aws, lab, kind="ip", delay=0)
    group = TargetGroupTraffic(AWSSettings(), arn, 8000, two, interval=0.05)
    backends = [Backend(h.name, h.address, 8000) for h in two]
    group.restore(backends)
    assert registered(aws, arn) == {h.address: "healthy" for h in two}
    assert {n: s.state for n, s in group.stats().items()} == {h.name: "ready" for h in two}
    assert all(s.requests is None and s.errors_5xx is None for s in group.stats().values())

    group.drain(backends[:1])
    assert group.wait_drained(backends[:1], timeout=5)
    assert registered(aws, arn) == {two[1].address: "healthy"}
    with pytest.raises(TrafficError, match=f"refusing to drain {two[1].name}: no other target is healthy"):
        group.drain(backends[1:])  # the last one serving
    with pytest.raises(TrafficError, match="not drained: nothing to wait for"):
        group.wait_drained(backends[1:], timeout=1)
    assert registered(aws, arn) == {two[1].address: "healthy"}  # nothing changed

    wrong_port = TargetGroupTraffic(AWSSettings(), arn, 9000, two)
    elb(aws).register_targets(TargetGroupArn=arn, Targets=[{"Id": two[0].address, "Port": 8000}])
    with pytest.raises(TrafficError, match=r"registered on port 8000, not 9000 \(traffic.port\)"):
        wrong_port.drain([Backend(two[0].name, two[0].address, 9000)])

    by_instance = TargetGroupTraffic(AWSSettings(), arn, 8000, two, register_by="instance")
    with pytest.raises(TrafficError, match="has no EC2 instance id"):
        by_instance.restore(backends[:1])
    gone = TargetGroupTraffic(AWSSettings(), arn.replace(arn[-4:], "0000"), 8000, two)
    with pytest.raises(
        TrafficError, match="target group sampleapp-ip: reading the targets' health: TargetGroupNotFound"
    ):
        gone.stats()

    # an instance that stopped reads `unused` (Target.InvalidState), and cannot be registered again
    iid = aws.instances([hosts[3].address], {"App": "other"}, lab.net)[0]
    fourth = Host(name=hosts[3].name, address=hosts[3].address, vars={"instance_id": iid})
    by_id = TargetGroupTraffic(AWSSettings(), target_group(aws, lab), 8000, [fourth], interval=0.05)
    backend = [Backend(fourth.name, fourth.address, 8000)]
    by_id.restore(backend)
    assert by_id.stats()[fourth.name].state == "ready"
    aws.ec2.stop_instances(InstanceIds=[iid])
    assert by_id.stats()[fourth.name].detail == "unused (Target.InvalidState)"
    with pytest.raises(TrafficError, match=f"target group sampleapp-instance: registering {fourth.name}: "):
        by_id.restore(backend)


ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/shop-prod/0123456789abcdef"


def _config(traffic: dict, **env) -> dict:
    return {
        "app": {"name": "shop", "artifact": "https://artifacts.example/shop-{version}.tar.gz"},
        "environments": {
            "prod": {
                "hosts": ["deploy@10.0.1.11", "deploy@10.0.1.12"],
                "ssh": {"accept_unknown_hosts": True},
                "path": "/srv/shop",
                "restart": "bin/restart",
                "health": {"url": "http://{host}:8000/health"},
                "strategy": {"kind": "rolling", "batch_size": 1},
                "traffic": {"balancer": "target-group", "port": 8000, **traffic},
                **env,
            }
        },
    }


def test_a_target_group_traffic_config_is_checked_before_anything_runs():
    good = parse_config(_config({"target_group_arn": ARN}))
    assert good.environments["prod"].traffic.register_by == "auto" and problems(good) == []
    for traffic, message in (
        ({}, "target-group needs `target_group_arn`"),
        ({"target_group_arn": "arn:aws:s3:::bucket"}, "is not a target group ARN"),
        ({"target_group_arn": ARN, "on": "deploy@lb1"}, "`on` is for haproxy and nginx"),
        ({"target_group_arn": ARN, "register_by": "name"}, "register_by"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config(_config(traffic))
    with pytest.raises(ConfigError, match="use a CloudWatch alarm on its HTTPCode_Target_5XX_Count"):
        parse_config(_config({"target_group_arn": ARN}, gates={"max_5xx": 0}))
