"""`app.upload: fetch`: hosts download the artifact from a store themselves, and the checks stay the same."""

from __future__ import annotations

import hashlib
import shutil
from contextlib import ExitStack

import pytest

from bot.domain import State
from bot.engine.events import StageStarted
from tests.lab.store import MOVED, artifact_store

URL_TEMPLATE = "/sampleapp-{version}.tar.gz"


def assert_nothing_switched(hosts) -> None:
    """v1.1.0 failed before any switch: v1.0.0 serving, no v1.1.0 release, no download left behind."""
    for h in hosts:
        assert h.current() == "v1.0.0" and h.answering() == "v1.0.0"
        assert not (h.srv / "app" / "releases" / "v1.1.0").exists()
        assert not list((h.srv / "app" / ".incoming").iterdir())


@pytest.fixture
def fetching(service, make_config, hosts):
    """fetching(url) -> a service whose first `count` hosts download the artifacts from the store at `url`."""

    def make(url: str, count: int = 2, template: str = URL_TEMPLATE):
        return service(make_config(hosts=hosts[:count], artifact=url + template, upload="fetch"))

    return make


def deploy_v1_0_0(fetching, store_dir, lab) -> None:
    """v1.0.0 on the hosts, fetched from a store that stops afterwards."""
    with artifact_store(store_dir, lab.services_address) as url:
        assert fetching(url).deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED


@pytest.fixture
def store_dir(tmp_path, artifacts):
    """A copy of the artifacts for a store to serve, so a test may break one without touching the others."""
    folder = tmp_path / "store"
    shutil.copytree(artifacts, folder)
    return folder


def test_hosts_download_the_artifact_and_check_it(hosts, fetching, store_dir, lab, cli):
    three = hosts[:3]
    # v1.1.0 has a published checksum; for v1.0.0 the bot downloads it once to compute one
    data = (store_dir / "sampleapp-v1.1.0.tar.gz").read_bytes()
    (store_dir / "sampleapp-v1.1.0.tar.gz.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    with artifact_store(store_dir, lab.services_address) as url:
        svc = fetching(url, count=3)
        plan = cli("deploy", "prod", "v1.1.0", "--dry-run")
        assert plan.returncode == 0, plan.stderr
        assert f"artifact: {url}/sampleapp-v1.1.0.tar.gz" in plan.stdout
        assert '-o "$f" -K -' in plan.stdout and url not in plan.stdout.split("commands on")[1]  # the URL: on stdin
        assert hashlib.sha256(data).hexdigest() in plan.stdout
        for version in ("v1.0.0", "v1.1.0"):
            dep = svc.deploy("prod", version, "cli:test")
            assert dep.state is State.SUCCEEDED, dep.error
    for h in three:
        assert h.current() == "v1.1.0" and h.answering() == "v1.1.0"
        # the host fetched v1.1.0 itself and checked it against the published checksum
        download = [c for c in h.commands() if "sampleapp-v1.1.0.tar.gz" in c and '-o "$f" -K -' in c]
        assert len(download) == 1 and f'[ "$got" != {hashlib.sha256(data).hexdigest()} ]' in download[0]
        assert not any(url in c for c in h.commands())  # the URLs came on the commands' stdin
        assert not any("sftp-server" in c for c in h.commands())  # nothing went through the bot
        assert not list((h.srv / "app" / ".incoming").iterdir())
    uploads = [s for s in svc.store.stages(dep.id) if s.stage == "upload" and s.host]
    assert sorted(s.host for s in uploads) == ["h1", "h2", "h3"] and all(s.ok for s in uploads)


def test_a_partial_download_is_caught_by_checksum_and_nothing_switches(hosts, fetching, store_dir, lab):
    two = hosts[:2]
    artifact = store_dir / "sampleapp-v1.1.0.tar.gz"
    data = artifact.read_bytes()
    (store_dir / "sampleapp-v1.1.0.tar.gz.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    deploy_v1_0_0(fetching, store_dir, lab)
    artifact.write_bytes(data[: len(data) // 2])  # the store now holds a partial copy
    with artifact_store(store_dir, lab.services_address) as url:
        dep = fetching(url).deploy("prod", "v1.1.0", "cli:test")
    assert dep.state is State.FAILED and dep.failed_stage == "upload"
    assert "checksum mismatch" in dep.error and "h1" in dep.error and "h2" in dep.error
    assert_nothing_switched(two)


def test_a_host_that_cannot_reach_the_store_fails_preflight_and_nothing_changes(hosts, fetching, store_dir, lab):
    two = hosts[:2]
    deploy_v1_0_0(fetching, store_dir, lab)
    before = [h.tree() for h in two]
    # the bot reaches this store, the hosts do not (127.0.0.1 is each host's own loopback)
    with artifact_store(store_dir, "127.0.0.1") as url:
        dep = fetching(url).deploy("prod", "v1.1.0", "cli:test")
    assert dep.state is State.FAILED and dep.failed_stage == "preflight"
    assert "h1: " in dep.error and "h2: " in dep.error and "cannot download the artifact" in dep.error
    assert [h.tree() for h in two] == before  # no backup, no release, no download
    assert [h.answering() for h in two] == ["v1.0.0"] * 2


def test_a_redirecting_store_is_followed(hosts, fetching, store_dir, lab):
    two = hosts[:2]
    with artifact_store(store_dir, lab.services_address) as url:
        dep = fetching(url, template=MOVED.rstrip("/") + URL_TEMPLATE).deploy("prod", "v1.0.0", "cli:test")
    assert dep.state is State.SUCCEEDED, dep.error
    assert [h.answering() for h in two] == ["v1.0.0"] * 2


def test_a_store_gone_after_preflight_fails_the_download_and_nothing_switches(hosts, fetching, store_dir, lab):
    two = hosts[:2]
    deploy_v1_0_0(fetching, store_dir, lab)
    with ExitStack() as store:
        url = store.enter_context(artifact_store(store_dir, lab.services_address))
        svc = fetching(url)
        # every host could reach the store in preflight; it goes away before the download
        svc.events.subscribe(lambda e: store.close() if isinstance(e, StageStarted) and e.stage == "backup" else None)
        dep = svc.deploy("prod", "v1.1.0", "cli:test")
    assert dep.state is State.FAILED and dep.failed_stage == "upload"
    assert dep.error.count("download of the artifact failed on this host") == 2
    assert_nothing_switched(two)


def test_a_host_without_curl_downloads_with_wget_and_no_url_shows_in_its_process_list(hosts, fetching, store_dir, lab):
    host = hosts[0]
    store = artifact_store(store_dir, lab.services_address)
    with store as url, host.without("curl"), host.process_lists("wget") as listing:
        dep = fetching(url, count=1).deploy("prod", "v1.0.0", "cli:test")
        listed = listing.read_text()
    assert dep.state is State.SUCCEEDED, dep.error
    assert host.current() == "v1.0.0" and host.answering() == "v1.0.0"  # the bytes checked against the sha256
    # preflight's check (a HEAD: --spider) and the download, each reading its URL from stdin
    assert listed.count("=== wget") == 2 and "--spider" in listed and " -i -" in listed
    for shown in (*host.commands(), listed):
        assert url not in shown
