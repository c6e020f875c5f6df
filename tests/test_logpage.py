"""A place to read a whole deploy: the signed log page, its JSON, `deploybot logs`, and the link in Slack.

Real parts only: deploys over SSH to the namespace hosts, the production WSGI app under waitress, a SQLite store,
the fake Slack Web API of the other Slack tests, `deploybot serve` as its own process, and Debian's chromium
driven by selenium (headless, pointed only at the bot's loopback address) to see the page redraw itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from html import unescape
from pathlib import Path

import pytest
import requests

from bot.links import LinkSigner, parse_ttl
from bot.store import Store
from bot.store.deployments import OUTPUT_LIMIT, keep_tail
from tests.serving import deploybot_serve, free_port
from tests.slack_api import FakeSlack
from tests.slack_client import BOT_TOKEN, SIGNING_SECRET

DEV, PM = "U0DEV", "U0PM"
SECRET = b"log-link-secret-for-tests"
# Longer than the Slack excerpt (20 lines), and it prints the database URL (with its password) and a secret key.
MIGRATE = (
    'bin/migrate && for i in $(seq 1 60); do echo "migration step $i of 60: applied"; done && '
    'echo "connected to $DATABASE_URL" && echo "SECRET_KEY=hunter2hunter2hunter2"'
)
STAGES = ["preflight", "backup", "upload", "migrate", "switch", "restart", "health", "verify", "cleanup"]


# ---- links and the output cap, alone --------------------------------------------------------------------------
def test_signed_links_open_one_deployment_until_they_expire():
    signer = LinkSigner(SECRET, ttl=3600, base_url="https://deploybot.example.com")
    now = 1_750_000_000
    url = signer.url(7, now=now)
    m = re.fullmatch(r"https://deploybot\.example\.com/deployments/7\?exp=(\d+)&sig=([0-9a-f]{64})", url)
    assert m and int(m.group(1)) == now + 3600
    exp, sig = m.groups()
    assert signer.check(7, exp, sig, now=now) and signer.check(7, exp, sig, now=now + 3600)
    assert not signer.check(7, exp, sig, now=now + 3601)  # expired
    assert not signer.check(8, exp, sig, now=now)  # moved to another deployment
    assert not signer.check(7, str(int(exp) + 1), sig, now=now)  # a later expiry
    assert not signer.check(7, exp, sig[:-1] + ("0" if sig[-1] != "0" else "1"), now=now)  # tampered
    assert not signer.check(7, exp, sig.upper(), now=now) and not signer.check(7, exp, "", now=now)
    assert not signer.check(7, "-1", sig, now=now) and not signer.check(7, "1e9", sig, now=now)
    forged = LinkSigner(b"another secret", ttl=3600).path(7, now=now)  # signed with the wrong secret
    assert not signer.check(7, *re.findall(r"exp=(\d+)&sig=(\w+)", forged)[0], now=now)
    far = now + 30 * 86400  # a validly signed link reaching beyond today's lifetime (the TTL was shortened)
    assert not signer.check(7, str(far), signer.signature(7, far), now=now)


def test_link_settings_from_the_environment():
    assert [parse_ttl(t) for t in ("90", "30m", "12h", "7d")] == [90, 1800, 43200, 604800]
    for bad in ("", "0", "-5", "1w", "soon"):
        with pytest.raises(ValueError):
            parse_ttl(bad)
    quiet = LinkSigner.from_env({})
    assert quiet.ephemeral and quiet.ttl == 7 * 86400 and quiet.url(1) is None  # no public URL: no link shown
    assert quiet.secret != LinkSigner.from_env({}).secret  # a random secret per process
    set_up = LinkSigner.from_env(
        {
            "DEPLOYBOT_LINK_SECRET": "s",
            "DEPLOYBOT_LINK_TTL": "1h",
            "DEPLOYBOT_PUBLIC_URL": "https://deploybot.example.com/",
        }
    )
    assert not set_up.ephemeral and set_up.ttl == 3600
    assert set_up.url(3).startswith("https://deploybot.example.com/deployments/3?exp=")
    with pytest.raises(ValueError):
        LinkSigner.from_env({"DEPLOYBOT_PUBLIC_URL": "deploybot.example.com"})


def test_output_is_kept_whole_up_to_the_cap(tmp_path):
    assert keep_tail("short") == "short"
    big = "".join(f"line {i:06d} ünïcode\n" for i in range(20_000))  # ~460 KB
    kept = keep_tail(big)
    head, rest = kept.split("\n", 1)
    cut = int(re.fullmatch(r"… (\d+) bytes cut", head).group(1))
    assert len(rest.encode()) <= OUTPUT_LIMIT and cut + len(rest.encode()) == len(big.encode())
    assert big.endswith(rest) and rest.endswith("line 019999 ünïcode\n")
    with Store(f"sqlite:///{tmp_path / 'cap.db'}") as store:
        dep = store.create_deployment(
            app="a", environment="prod", version="v1", kind="deploy", requested_by="U", state="running"
        )
        from datetime import UTC, datetime

        at = datetime.now(UTC)
        store.record_stage(
            dep.id,
            stage="migrate",
            host="h1",
            phase="forward",
            started_at=at,
            ended_at=at,
            ok=True,
            exit_code=0,
            excerpt="tail",
            error="",
            output=big,
        )
        [(record, output)] = store.stage_outputs(dep.id)
        assert record.excerpt == "tail" and output == kept


# ---- the bot under test ---------------------------------------------------------------------------------------
@pytest.fixture
def world(world):
    """The shared bot under test (conftest), its log links signed and pointing at its own loopback address."""

    def start(hosts, **overrides):
        signer = LinkSigner(SECRET, ttl=3600)
        bot = world(hosts, build_options={"links": signer}, **overrides)
        signer.base_url = bot.url
        bot.signer = signer
        return bot

    return start


def deploy_and_approve(bot, version: str = "v1.0.0") -> tuple[str, int]:
    """/deploy prod VERSION, the PM approves; the message's ts and the deployment's id."""
    assert bot.slack.command("/deploy", f"prod {version}", DEV).status_code == 200
    req = bot.fake.wait_for(
        lambda: next((c for c in bot.fake.of("chat.postMessage") if not c.params.get("thread_ts")), None), 20
    )
    dep = next(
        e["value"]
        for b in req.params["blocks"]
        if b.get("type") == "actions"
        for e in b["elements"]
        if e["action_id"] == "approve"
    )
    assert bot.slack.click("approve", dep, PM, req.params["_ts"]).status_code == 200
    return req.params["_ts"], int(dep)


def log_link(call) -> str | None:
    """The "Full log" link of a Slack message or thread post, as a browser would follow it."""
    found = re.search(r"<([^|>]+)\|Full log>", call.text)
    return unescape(found.group(1)) if found else None


def final_message(bot, ts: str, timeout: float = 90):
    return bot.fake.wait_for(
        lambda: (
            (m := bot.fake.message(ts))
            and re.search(r"(Succeeded|Failed)\S* in", m.text)
            and "abort" not in m.buttons()
            and m
        ),
        timeout,
    )


def cells(html: str) -> dict[tuple[str, str], str]:
    """The grid's cells as the server rendered them: (stage, host) -> state."""
    grid = html.split('<section id="grid">', 1)[1].split("</section>", 1)[0]
    return {
        (s, h): state
        for s, h, state in re.findall(r'data-stage="([^"]+)" data-host="([^"]+)" data-state="([^"]+)"', grid)
    }


def test_finished_deploy_page_json_cli_and_the_slack_link(world, hosts, cli):
    two = hosts[:2]
    bot = world(two, approval={"approvers": [PM]}, migrate=MIGRATE, verify_seconds=1)
    ts, dep_id = deploy_and_approve(bot)
    running_seen = []
    deadline = time.monotonic() + 90
    while "Succeeded" not in bot.fake.message(ts).text and time.monotonic() < deadline:  # JSON moves meanwhile
        link = log_link(bot.fake.message(ts))
        if link:
            doc = requests.get(link.replace(f"/deployments/{dep_id}?", f"/deployments/{dep_id}.json?"), timeout=5)
            running_seen.append((doc.json()["state"], doc.json()["final"], len(doc.json()["results"])))
        time.sleep(0.2)
    final = final_message(bot, ts)
    assert running_seen and running_seen[0][:2] == ("running", False) and running_seen[0][2] < 2 * len(STAGES)

    # the Slack message and the first post of its thread carry the link
    link = log_link(final)
    assert link and link.startswith(f"{bot.url}/deployments/{dep_id}?exp=")
    thread = bot.fake.thread(ts)
    assert log_link(thread[0]) and all(log_link(post) is None for post in thread[1:])

    page = requests.get(link, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'nonce-" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"
    html = page.text
    grid = cells(html)
    names = [h.name for h in two]
    assert set(grid) == {(s, h) for s in STAGES for h in names}
    assert grid == {**{(s, h): "ok" for s in STAGES for h in names}, ("migrate", names[1]): "not run"}
    assert "succeeded" in html and f"#{dep_id} deploy <b>v1.0.0</b> → <b>prod</b>" in html and PM in html
    # the whole output, not the excerpt Slack got
    excerpt = next(s.excerpt for s in bot.service.store.stages(dep_id) if s.stage == "migrate")
    assert "migration step 1 of 60" not in excerpt and "migration step 60 of 60" in excerpt
    for i in (1, 2, 30, 60):
        assert f"migration step {i} of 60: applied" in html
    assert "postgres://demo:***@db/app" in html and "SECRET_KEY=***" in html
    assert "deploy_requested" in html and "deploy_finished" in html and "approved" in html  # audit rows

    as_json = requests.get(link.replace(f"/deployments/{dep_id}?", f"/deployments/{dep_id}.json?"), timeout=10)
    doc = as_json.json()
    assert as_json.status_code == 200 and doc["state"] == "succeeded" and doc["final"] is True
    assert [r["stage"] for r in doc["grid"]] == STAGES and doc["hosts"] == names
    migrate = next(r for r in doc["results"] if r["stage"] == "migrate")
    assert migrate["output"].count("migration step") == 60 and migrate["lines"] >= 62
    for text in (html, as_json.text):  # secrets from the hosts' shared/.env never reach the page
        assert "s3cr3t" not in text and "hunter2" not in text

    # forged, tampered, expired: 403 and nothing shown; a valid link to nothing: 404
    exp, sig = re.search(r"exp=(\d+)&sig=(\w+)", link).groups()
    bad_sig = sig[:-4] + ("0000" if not sig.endswith("0000") else "1111")
    past = int(time.time()) - 10
    here = f"/deployments/{dep_id}"
    for path in (
        f"{here}?exp={exp}&sig={bad_sig}",
        f"{here}.json?exp={exp}&sig={bad_sig}",
        f"/deployments/{dep_id + 1}?exp={exp}&sig={sig}",
        f"{here}?exp={int(exp) + 60}&sig={sig}",
        f"{here}?exp={past}&sig={bot.signer.signature(dep_id, past)}",
        here,
        f"{here}?exp=&sig=",
    ):
        r = requests.get(bot.url + path, timeout=5)
        assert r.status_code == 403 and r.headers["Content-Type"].startswith("text/plain"), path
        assert "v1.0.0" not in r.text and "migration" not in r.text and len(r.text) < 200
    missing = requests.get(bot.url + bot.signer.path(dep_id + 1000), timeout=5)
    assert missing.status_code == 404 and "v1.0.0" not in missing.text

    # the same in the terminal
    out = cli("logs", str(dep_id))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"#{dep_id} deploy v1.0.0 -> prod: SUCCEEDED" in text and f"approve  {PM}" in text
    header = next(line for line in text.splitlines() if line.startswith("stage "))
    assert header.split() == ["stage", *names]
    assert re.search(r"^migrate\s+ok \d+\.\ds\s+not run", text, re.M)
    assert "migration step 1 of 60: applied" in text and "--- migrate on" in text and "deploy_finished" in text
    assert "s3cr3t" not in text and "hunter2" not in text
    as_json = json.loads(cli("logs", str(dep_id), "--json").stdout)
    assert as_json["grid"] == doc["grid"] and as_json["results"] == doc["results"]
    missing = cli("logs", "999")
    assert missing.returncode == 1 and "no deployment #999" in missing.stderr


# ---- a real browser -------------------------------------------------------------------------------------------
def start_browser():
    """(driver, None), or (None, why not): headless Debian chromium through chromedriver."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install -e '.[test]')"
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        return None, "chromium / chromedriver not installed (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-proxy-server",
    ):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
    except Exception as exc:  # noqa: BLE001 - report why
        return None, f"chromium cannot start here: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    driver.set_page_load_timeout(20)
    return driver, None


@pytest.fixture
def browser():
    """The browser; the test is skipped, saying why, where it cannot start."""
    driver, why = start_browser()
    if driver is None:
        pytest.skip(why)
    yield driver
    driver.quit()


def keep_screenshot(tmp_path: Path, *names: str) -> None:
    if os.environ.get("DEPLOYBOT_SCREENSHOTS"):  # a folder to keep them in, for a person to look at
        for name in names:
            shutil.copy(tmp_path / name, Path(os.environ["DEPLOYBOT_SCREENSHOTS"]) / name)


def dom_cells(driver) -> dict[tuple[str, str], str]:
    """The grid as the browser shows it now, read in one go (the page redraws it under our feet)."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#grid td[data-stage]'))"
        ".map(td => [td.dataset.stage, td.dataset.host, td.dataset.state])"
    )
    return {(stage, host): state for stage, host, state in rows}


def test_running_deploy_page_updates_live_in_a_browser(world, hosts, browser, tmp_path):
    two = hosts[:2]
    names = [h.name for h in two]
    bot = world(two, approval={"approvers": [PM]}, migrate=MIGRATE, verify_seconds=6)
    ts, dep_id = deploy_and_approve(bot)
    link = bot.fake.wait_for(lambda: log_link(bot.fake.message(ts)), 30)
    assert link.startswith("http://127.0.0.1:")  # the browser goes nowhere but the bot's loopback address
    browser.get(link)
    body = browser.find_element("tag name", "body")
    assert body.get_attribute("data-final") == "0" and body.get_attribute("data-state") == "running"
    browser.execute_script("window.sameDocument = true")
    browser.save_screenshot(str(tmp_path / "running.png"))
    seen: dict[tuple[str, str], list[str]] = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for key, state in dom_cells(browser).items():
            if not seen.get(key) or seen[key][-1] != state:
                seen.setdefault(key, []).append(state)
        if body.get_attribute("data-state") == "succeeded":
            break
        time.sleep(0.2)
    assert body.get_attribute("data-state") == "succeeded", body.get_attribute("data-state")
    assert browser.execute_script("return window.sameDocument") is True  # redrawn in place, never reloaded
    assert any(states[:1] != ["ok"] and states[-1] == "ok" for states in seen.values())  # a cell changed
    assert any("running" in seen.get(("verify", h), []) for h in names), seen
    time.sleep(1.5)  # final: polling has stopped, the live note is gone
    assert "live: updates every second" not in browser.find_element("id", "head").text

    grid = dom_cells(browser)
    assert grid == {**{(s, h): "ok" for s in STAGES for h in names}, ("migrate", names[1]): "not run"}
    outputs = browser.find_elements("css selector", "#outputs details")
    assert len(outputs) == len(STAGES) * 2 - 1
    migrate = next(d for d in outputs if "migrate" in d.find_element("tag name", "summary").text)
    text = migrate.find_element("css selector", "pre.out").get_attribute("textContent")
    assert "migration step 1 of 60: applied" in text and "migration step 60 of 60: applied" in text
    assert "postgres://demo:***@db/app" in text
    migrate.find_element("tag name", "summary").click()  # open it, as a reader would
    assert "migration step 1 of 60" in migrate.text
    assert "s3cr3t" not in browser.page_source and "hunter2" not in browser.page_source
    assert "deploy_finished" in browser.find_element("id", "audit").text
    browser.set_window_size(1400, 2400)
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(tmp_path / "final.png"))
    assert (tmp_path / "running.png").stat().st_size > 10_000 and (tmp_path / "final.png").stat().st_size > 10_000
    keep_screenshot(tmp_path, "running.png", "final.png")


def test_failed_deploy_marks_the_failed_cell_and_shows_the_revert(world, hosts, tmp_path):
    two = hosts[:2]
    names = [h.name for h in two]
    bot = world(two, health={"timeout": 2})
    bot.service.deploy("prod", "v1.0.0", "cli:ops")
    dep = bot.service.deploy("prod", "v1.9.0", "cli:ops")  # its health answers 500: reverted on its own
    assert dep.state.value == "rolled_back" and dep.failed_stage == "health"
    page = requests.get(bot.url + bot.signer.path(dep.id), timeout=10)
    assert page.status_code == 200
    grid = cells(page.text)
    assert {grid["health", h] for h in names} == {"failed"} and {grid["revert", h] for h in names} == {"ok"}
    assert {grid["verify", h] for h in names} == {grid["cleanup", h] for h in names} == {"not run"}
    culprit = re.findall(r'<td class="c-failed culprit" data-stage="health" data-host="([^"]+)"', page.text)
    assert culprit == [dep.failed_host]
    assert "HTTP 500" in page.text and "rolled back" in page.text and "auto_rollback_started" in page.text
    failed = re.findall(r'<details id="health@([^#]+)#1" class="failed" open>', page.text)
    assert sorted(failed) == sorted(names)  # failed outputs are open from the start
    driver, why = start_browser()
    if driver is None:
        print(f"no screenshot of the failed page: {why}")
        return
    try:
        driver.set_window_size(1400, 1300)
        driver.get(bot.url + bot.signer.path(dep.id))
        assert driver.find_element("tag name", "body").get_attribute("data-state") == "rolled_back"
        assert dom_cells(driver)["health", dep.failed_host] == "failed"
        driver.save_screenshot(str(tmp_path / "failed.png"))
        keep_screenshot(tmp_path, "failed.png")
    finally:
        driver.quit()


# ---- `deploybot serve` serves it ----------------------------------------------------------------------------
def test_deploybot_serve_serves_signed_log_pages(tmp_path):
    db = f"sqlite:///{tmp_path / 'deploybot.db'}"
    with Store(db) as store:
        dep = store.create_deployment(
            app="sampleapp",
            environment="prod",
            version="v2.0.0",
            kind="deploy",
            requested_by=DEV,
            state="pending_approval",
            meta={"hosts": ["web1", "web2"]},
        )
    config = tmp_path / "deploy.yml"
    config.write_text(
        "app: {name: sampleapp, artifact: '/nonexistent/sampleapp-{version}.tar.gz'}\n"
        "environments:\n  prod:\n    hosts: [local]\n    path: /tmp/x\n    restart: 'true'\n"
        "    migrate: bin/migrate\n    verify_seconds: 5\n"
        "    health: {url: 'http://127.0.0.1:1/health'}\n"
    )
    port = free_port()
    with FakeSlack() as fake:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DEPLOYBOT_"))},
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.api_url,
            "DATABASE_URL": db,
            "DEPLOYBOT_CONFIG": str(config),
            "DEPLOYBOT_LINK_SECRET": "shared-secret",
            "DEPLOYBOT_LINK_TTL": "10m",
            "DEPLOYBOT_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        with deploybot_serve(env, tmp_path, port):
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    requests.get(base + "/healthz", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            signer = LinkSigner(b"shared-secret", ttl=600)
            page = requests.get(base + signer.path(dep.id), timeout=5)
            assert page.status_code == 200 and "v2.0.0" in page.text and "pending approval" in page.text
            assert set(cells(page.text)) == {(s, h) for s in STAGES for h in ("web1", "web2")}
            assert set(cells(page.text).values()) == {"pending"}
            other = LinkSigner(b"not the secret", ttl=600)
            assert requests.get(base + other.path(dep.id), timeout=5).status_code == 403
            long_lived = LinkSigner(b"shared-secret", ttl=86400)  # beyond DEPLOYBOT_LINK_TTL=10m
            assert requests.get(base + long_lived.path(dep.id), timeout=5).status_code == 403
