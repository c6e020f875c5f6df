"""The architecture, enforced by reading the code's imports (every import, including those inside functions).

Layers, lowest first; a module may import its own layer and the ones below, never one above:
    0 base        bot.domain, bot.config, bot.host, bot.config_check, bot.redact, bot.executors,
                  bot.sampleapp, bot.links (signed log links), bot.logs (JSON log lines),
                  bot.aws.config, bot.traffic.config, bot.gates_config (the AWS, balancer and gates models of
                  deploy.yml, in bot.config)
    1 parts       bot.targets (SSH, local, HTTP probes), bot.store (the only SQL), bot.traffic (load balancers),
                  bot.aws (S3, EC2, CloudWatch, Secrets Manager; never the service or anything above it)
    2 engine      bot.engine (flow table, plan, pipeline, commands, events)
    3 use cases   bot.service, bot.recorder
    4 Slack       handlers
    5 fronts      bot.app, bot.web, bot.metrics, bot.cli (and bot.cli_*), bot.init (and bot.init_answers),
                  bot.process, bot.demo, bot.console_progress, bot.logpage (and bot.logpage_html)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    (
        "bot.domain",
        "bot.config",
        "bot.host",
        "bot.config_check",
        "bot.redact",
        "bot.executors",
        "bot.sampleapp",
        "bot.links",
        "bot.logs",
        "bot.aws.config",
        "bot.traffic.config",
        "bot.gates_config",
        "bot.artifact_template",
    ),
    ("bot.targets", "bot.store", "bot.traffic", "bot.aws"),
    ("bot.engine",),
    ("bot.service", "bot.recorder"),
    ("handlers",),
    (
        "bot.app",
        "bot.web",
        "bot.metrics",
        "bot.cli",
        "bot.cli_common",
        "bot.cli_deploy",
        "bot.cli_read",
        "bot.cli_admin",
        "bot.cli_backups",
        "bot.init",
        "bot.init_answers",
        "bot.process",
        "bot.demo",
        "bot.console_progress",
        "bot.logpage",
        "bot.logpage_html",
    ),
]
FORBIDDEN_IN_HANDLERS = ("bot.store", "bot.targets", "sqlalchemy", "alembic", "fabric", "paramiko", "invoke")
MAX_LINES = 300


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted([*ROOT.glob("bot/**/*.py"), *ROOT.glob("handlers/**/*.py")]):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from bot import x` names module bot.x
    return out


def layer(name: str) -> int | None:
    for index, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    return None


def test_every_module_has_a_layer():
    assert [m for m in modules() if m not in ("bot", "bot.engine", "bot.targets") and layer(m) is None] == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_import_runs_upward(name):
    own = layer(name)
    if own is None:
        return
    known = modules()
    upward = sorted(i for i in imports(known[name]) if i in known and (layer(i) or 0) > own)
    assert upward == [], f"{name} (layer {own}) imports from above: {upward}"


@pytest.mark.parametrize("name", sorted(m for m in modules() if m.startswith("handlers")))
def test_handlers_touch_no_ssh_or_sql(name):
    bad = sorted(i for i in imports(modules()[name]) if i.startswith(FORBIDDEN_IN_HANDLERS))
    assert bad == [], f"{name} imports {bad}"


def test_modules_stay_small_enough_to_read_in_one_sitting():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


def test_the_layer_test_would_catch_an_upward_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from bot.app import build\n")
    assert "bot.app" in imports(probe) and layer("bot.app") > layer("bot.engine.pipeline")
