"""ECS services as a target kind (`kind: ecs`): deploy, automatic revert, rollback, through the CLI and Slack.

AWS is moto in server mode on loopback; the bot's boto3 clients speak HTTP to it. moto runs no tasks, so:
- the service's running count is what moto is told at creation (MOTO_ECS_SERVICE_RUNNING, read by moto's server
  in this process), and moto keeps one PRIMARY deployment: a service is stable as soon as it is updated;
- "the service's tasks" are a local HTTP server (TaskStandIn) answering /health with the image tag of the task
  definition the service runs now, read from moto through boto3, so health follows the deployed revision; it
  answers 500 for the tags listed as unhealthy.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from bot.config import ConfigError, parse_config
from bot.domain import State
from bot.store import Store
from tests.aws_lab import FAKE_CREDENTIALS

IMAGE = "registry.example/shop:{version}"
DEV, PM = "U0DEV", "U0PM"


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # its request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class TaskStandIn:
    """Plays the service's tasks: /health answers the tag of the image the service's task definition runs now."""

    def __init__(self, ecs, unhealthy: set[str]):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                tag = stand_in.serving()
                status = 500 if tag in unhealthy else 200
                body = json.dumps({"version": tag}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.ecs = ecs
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serving(self) -> str:
        arn = self.ecs.describe_services(cluster="shop", services=["web"])["services"][0]["taskDefinition"]
        containers = self.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["containerDefinitions"]
        return next(c["image"] for c in containers if c["name"] == "app").rpartition(":")[2]


class Shop:
    """moto's ECS with cluster `shop`, service `web` (2 tasks) on task definition shop:1 running v1.0.0."""

    def __init__(self, moto_url: str, monkeypatch, tmp_path, unhealthy: set[str], running: int):
        import boto3

        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": moto_url}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", str(running))  # moto runs no tasks: it reports this many
        reset = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=10)
        self.ecs = boto3.client("ecs", endpoint_url=moto_url, region_name="us-east-1")
        self.ecs.create_cluster(clusterName="shop")
        self.first = self.ecs.register_task_definition(
            family="shop",
            executionRoleArn="arn:aws:iam::123456789012:role/shop-exec",
            cpu="256",
            memory="512",
            containerDefinitions=[
                {"name": "app", "image": IMAGE.format(version="v1.0.0"), "essential": True, "memory": 256},
                {"name": "proxy", "image": "envoyproxy/envoy:v1.30", "essential": True, "memory": 128},
            ],
        )["taskDefinition"]["taskDefinitionArn"]
        self.ecs.create_service(cluster="shop", serviceName="web", taskDefinition=self.first, desiredCount=2)
        self.tasks = TaskStandIn(self.ecs, unhealthy)
        self.config = tmp_path / "deploy.yml"

    def write_config(self, ecs: dict | None = None, **env) -> None:
        ecs = ecs or {}
        environment = {
            "kind": "ecs",
            "ecs": {"cluster": "shop", "service": "web", "container": "app", "image": IMAGE, "poll": 0.1, **ecs},
            "health": {"url": self.tasks.url, "timeout": 2, "interval": 0.1},
            "verify_seconds": 0.3,
            **env,
        }
        config = {
            "app": {"name": "shop", "artifact": "https://artifacts.invalid/shop-{version}.tar.gz"},
            "aws": {"region": "us-east-1"},
            "environments": {"prod": environment},
        }
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))

    def revisions(self) -> list[dict]:
        arns = self.ecs.list_task_definitions(familyPrefix="shop")["taskDefinitionArns"]
        found = [self.ecs.describe_task_definition(taskDefinition=a)["taskDefinition"] for a in arns]
        return sorted(found, key=lambda d: d["revision"])

    def service_on(self) -> str:
        """The task definition the service runs, as `shop:N`."""
        arn = self.ecs.describe_services(cluster="shop", services=["web"])["services"][0]["taskDefinition"]
        return arn.rpartition("/")[2]

    def answering(self) -> str:
        with urllib.request.urlopen(self.tasks.url, timeout=5) as resp:
            return json.loads(resp.read())["version"]

    def close(self) -> None:
        self.tasks.server.shutdown()
        self.tasks.server.server_close()


@pytest.fixture
def shop(moto_url, monkeypatch, tmp_path):
    made: list[Shop] = []

    def make(unhealthy: set[str] = frozenset(), running: int = 2, **env) -> Shop:
        s = Shop(moto_url, monkeypatch, tmp_path, set(unhealthy), running)
        s.write_config(**env)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def trail(db_path) -> list[tuple]:
    store = Store(f"sqlite:///{db_path}")
    try:
        return [(r.deployment_id, r.action, r.outcome, r.version) for r in store.audit_events()]
    finally:
        store.close()


def test_cli_deploys_a_new_revision_and_rolls_back_to_the_previous_and_to_a_named_one(shop, cli, db_path):
    aws = shop()
    checked = cli("check-config", config=aws.config)
    assert checked.returncode == 0 and "prod (ECS service web in cluster shop)" in checked.stdout, checked.stderr

    plan = cli("deploy", "prod", "v1.1.0", "--dry-run", config=aws.config)
    assert plan.returncode == 0, plan.stderr
    assert "commands on ecs:shop/web:" in plan.stdout
    assert "to prod (ECS service web in cluster shop, its rolling update)" in plan.stdout
    assert "stages: preflight -> upload -> switch -> restart -> health -> verify" in plan.stdout
    assert "container app's image set to registry.example/shop:v1.1.0" in plan.stdout
    assert len(aws.revisions()) == 1  # a dry run registers nothing

    for version, revision in (("v1.1.0", "shop:2"), ("v1.2.0", "shop:3")):
        done = cli("deploy", "prod", version, "--yes", config=aws.config)
        assert done.returncode == 0, done.stdout + done.stderr
        assert aws.service_on() == revision and aws.answering() == version
    second, third = aws.revisions()[1:]
    assert [c["image"] for c in third["containerDefinitions"]] == [
        IMAGE.format(version="v1.2.0"),
        "envoyproxy/envoy:v1.30",
    ]
    role = "arn:aws:iam::123456789012:role/shop-exec"
    assert [(d["cpu"], d["memory"], d["executionRoleArn"]) for d in (second, third)] == [("256", "512", role)] * 2

    back = cli("rollback", "prod", "--reason", "checkout errors", config=aws.config)  # a new process: found by image
    assert back.returncode == 0, back.stdout + back.stderr
    assert aws.service_on() == "shop:2" and aws.answering() == "v1.1.0" and len(aws.revisions()) == 3
    named = cli("rollback", "prod", "v1.0.0", "--reason", "back to the start", config=aws.config)
    assert named.returncode == 0, named.stdout + named.stderr
    assert aws.service_on() == "shop:1" and aws.answering() == "v1.0.0" and len(aws.revisions()) == 3

    status = cli("status", "prod", config=aws.config)
    assert status.returncode == 0 and "ecs:shop/web" in status.stdout and "v1.0.0" in status.stdout, status.stdout
    rows = trail(db_path)
    for dep, version in ((1, "v1.1.0"), (2, "v1.2.0")):
        actions = [(a, o) for d, a, o, v in rows if d == dep and v == version]
        assert actions[0] == ("deploy_requested", "approved") and ("deploy_started", "running") in actions
        assert actions[-1] == ("deploy_finished", "succeeded")
    for dep, version in ((3, "v1.1.0"), (4, "v1.0.0")):
        assert (dep, "rollback_finished", "succeeded", version) in rows
    store = Store(f"sqlite:///{db_path}")
    try:
        stages = [(s.stage, s.host, s.ok) for s in store.stages(2) if s.host]
    finally:
        store.close()
    expected = ("preflight", "upload", "switch", "restart", "health", "verify")
    assert [s for s, _, _ in stages] == list(expected) and all(h == "ecs:shop/web" and ok for _, h, ok in stages)


def test_slack_deploy_failing_health_reverts_the_service_to_the_previous_revision(shop, tmp_path):
    from tests.slack_api import FakeSlack
    from tests.slack_client import BotUnderTest
    from tests.test_slack_flow import deployment_id, request_message, wait_final

    aws = shop(unhealthy={"v1.9.0"}, approval={"approvers": [PM]})
    with FakeSlack() as fake, BotUnderTest(aws.config, f"sqlite:///{tmp_path / 'bot.db'}", fake) as bot:
        assert bot.slack.command("/deploy", "prod v1.9.0", DEV).status_code == 200
        req = request_message(bot)
        assert "`ecs:shop/web`: v1.0.0 → *v1.9.0*" in req.text, req.text
        assert bot.slack.click("approve", str(deployment_id(req)), PM, req.params["_ts"]).status_code == 200
        final = wait_final(bot, req.params["_ts"])
        assert "rolled back" in final.text and "HTTP 500" in final.text, final.text
        dep = bot.service.store.get(deployment_id(req))
        assert dep.state is State.ROLLED_BACK and dep.failed_stage == "health"
        actions = [(a.action, a.outcome) for a in bot.service.store.audit_events(deployment_id=dep.id)]
        assert ("approved", "approve") in actions and actions[-1] == ("deploy_finished", "rolled_back")
        reverts = [s for s in bot.service.store.stages(dep.id) if s.stage == "revert"]
        assert [(s.host, s.ok) for s in reverts] == [("ecs:shop/web", True)]

    revisions = aws.revisions()
    assert [r["containerDefinitions"][0]["image"] for r in revisions] == [
        IMAGE.format(version=v) for v in ("v1.0.0", "v1.9.0")
    ]
    assert aws.service_on() == "shop:1" and aws.answering() == "v1.0.0"  # the previous revision, serving again


def test_a_service_that_never_becomes_stable_fails_in_bounded_time_and_is_asked_back(shop, service):
    aws = shop(running=0, ecs={"stable_timeout": 0.5})  # moto reports 0 of 2 tasks running, whatever runs
    svc = service(aws.config)
    dep = svc.deploy("prod", "v1.1.0", "cli:test")
    assert dep.state is State.ROLLBACK_FAILED and dep.failed_stage == "restart"
    assert "not stable on shop:2 after 0.5s: 0 of 2 tasks running" in dep.error
    assert aws.service_on() == "shop:1"  # the revert moved the service back; it cannot be seen stable either
    revert = [s for s in svc.store.stages(dep.id) if s.stage == "revert"]
    assert [(s.host, s.ok) for s in revert] == [("ecs:shop/web", False)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"path": "/srv/shop", "restart": "x"}, "environments.prod: Value error, kind ecs has no path, restart"),
        ({"hosts": ["deploy@10.0.0.1"]}, "kind ecs has no hosts"),
        ({"ecs": None}, "kind ecs needs ecs: {cluster, service, container, image}"),
        ({"ecs": {"image": "registry/shop:latest"}}, "environments.prod.ecs.image: Value error, image must put"),
        ({"ecs": {"cluster": "shop;rm"}}, "environments.prod.ecs.cluster: Value error, 'shop;rm' is not an ECS name"),
    ],
)
def test_an_ecs_environment_is_checked_clearly(change, message):
    env = {
        "kind": "ecs",
        "ecs": {"cluster": "shop", "service": "web", "container": "app", "image": IMAGE},
        "health": {"url": "http://127.0.0.1:1/health"},
    }
    for key, value in change.items():
        env[key] = {**env[key], **value} if isinstance(value, dict) else value
    with pytest.raises(ConfigError) as err:
        parse_config({"app": {"name": "shop", "artifact": "/a/shop-{version}.tgz"}, "environments": {"prod": env}})
    assert message in str(err.value)
