"""deploy.yml parsing: every problem found at once, with where it is; versions checked strictly."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, Host, InvalidVersion, parse_config
from bot.redact import Redactor

BASE = {
    "app": {"name": "shop", "artifact": "/artifacts/shop-{version}.tar.gz"},
    "environments": {
        "prod": {
            "hosts": ["deploy@10.0.0.1", "10.0.0.2:2222"],
            "path": "/srv/shop",
            "restart": "bin/restart",
            "health": {"url": "http://{host}:8000/health"},
        },
    },
}


def test_valid_config_parses_hosts_and_defaults():
    cfg = parse_config(BASE)
    env = cfg.environment("prod")
    assert env.name == "prod"
    assert [(h.user, h.address, h.port) for h in env.hosts] == [("deploy", "10.0.0.1", 22), (None, "10.0.0.2", 2222)]
    assert env.ssh.accept_unknown_hosts is False
    assert env.health_url(env.hosts[0]) == "http://10.0.0.1:8000/health"


def test_every_problem_is_reported_with_its_location():
    bad = {
        **BASE,
        "environments": {
            "prod": {
                **BASE["environments"]["prod"],
                "hosts": ["ok@h", "a b"],
                "keep_releases": 1,
                "strategy": {"kind": "yolo"},
            }
        },
    }
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    text = str(err.value)
    assert "environments.prod.hosts[1]" in text
    assert "environments.prod.keep_releases" in text
    assert "environments.prod.strategy.kind" in text


def test_hosts_can_only_fetch_an_artifact_url():
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "app": {**BASE["app"], "upload": "fetch"}})
    assert "app.upload" in str(err.value) and "http(s) artifact URL" in str(err.value)
    cfg = parse_config(
        {**BASE, "app": {"name": "shop", "artifact": "https://store/shop-{version}.tgz", "upload": "fetch"}}
    )
    assert cfg.app.upload == "fetch"


def test_credentials_in_the_artifact_url_are_refused_without_showing_them():
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "app": {"name": "shop", "artifact": "https://ci:hunter22@store/shop-{version}.tgz"}})
    assert "app.artifact" in str(err.value) and "hunter22" not in str(err.value)


@pytest.mark.parametrize(
    ("artifact", "message"),
    [
        ("/artifacts/shop.tar.gz", "must contain {version}"),
        ("/artifacts/{app}-{version}.tar.gz", "only {version} may be replaced, not {app}"),
        ("/artifacts/shop-{version!r}.tar.gz", r"not \{version!r\}"),
        ("/artifacts/shop-{version}}.tar.gz", "Single '}' encountered"),
    ],
)
def test_an_artifact_template_fills_in_the_version_and_nothing_else(artifact, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, "app": {"name": "shop", "artifact": artifact}})
    literal = parse_config({**BASE, "app": {"name": "shop", "artifact": "/a/{{x}}-{version}.tgz"}})
    assert literal.artifact_for("v1.2.0") == "/a/{x}-v1.2.0.tgz"


def test_unknown_keys_are_typos_not_silence():
    bad = {**BASE, "environments": {"prod": {**BASE["environments"]["prod"], "restrat": "x"}}}
    with pytest.raises(ConfigError, match="environments.prod.restrat"):
        parse_config(bad)


@pytest.mark.parametrize("version", ["v1.2.3", "1.2", "v10.0.1", "v1.2.3-rc1"])
def test_plain_versions_pass(version):
    assert parse_config(BASE).check_version(version) == version


@pytest.mark.parametrize(
    "version", ["v1; rm -rf /", "$(id)", "../../etc", "v1.2.3 ", "x" * 65, "v1.2\u00e9", "", "v1..2", "v1/2", "latest"]
)
def test_hostile_versions_are_refused(version):
    with pytest.raises(InvalidVersion):
        parse_config(BASE).check_version(version)


def test_host_mapping_with_vars():
    h = Host.parse({"host": "local", "name": "web1", "vars": {"port": 8101}})
    assert h.is_local and h.template_vars()["port"] == "8101"


def test_redactor_masks_credentials():
    r = Redactor()
    text = "DATABASE_URL=postgres://app:hunter22@db/app API_TOKEN=abc123 xoxb-1234-5678-abcdef ok"
    out = r(text)
    assert "hunter22" not in out and "abc123" not in out and "xoxb-1234" not in out and out.endswith("ok")
