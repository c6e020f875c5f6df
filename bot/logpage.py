"""One deployment whole, three ways: a JSON document, an HTML page that redraws itself from that document while the
deployment runs, and lines for the terminal (the `deploybot logs` command, defined here beside its renderers).
Command output is stored redacted (the engine redacts it before any subscriber sees it); every other text passes
through the redactor here again, whatever process renders it. Output is not redacted twice: at ~0.2 s a MB, a page
polled every second would take the interpreter from Slack's acks. The page needs nothing from outside: CSS and
JS are inline, under a nonce (the HTML is drawn in bot/logpage_html.py). Importing this module loads nothing
heavy (the CLI imports it to register `logs`, and --help must stay fast); what a command needs is imported when it
runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from bot.service.environments import DeploymentLog


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def document(log: DeploymentLog) -> dict:
    """The page's data: header, approvals, the grid of stages by hosts, every result with its output, the audit."""
    from bot.domain import State
    from bot.redact import redact

    d = log.deployment
    waiting = d.state.is_active or d.state is State.PENDING_APPROVAL
    current = d.meta.get("stage") if d.state in (State.RUNNING, State.ROLLING_BACK) else None
    cells = {(r.stage, r.host): r for r, _, _ in log.results if r.host}
    grid = []
    for stage in log.stages:
        row = []
        for host in log.hosts:
            r = cells.get((stage, host))
            state = (
                ("ok" if r.ok else "failed")
                if r
                else "running"
                if stage == current
                else "pending"
                if waiting
                else "not run"
            )
            row.append(
                {
                    "host": host,
                    "state": state,
                    "seconds": round(r.seconds, 2) if r else None,
                    "exit_code": r.exit_code if r else None,
                }
            )
        grid.append({"stage": stage, "cells": row})
    return {
        "id": d.id,
        "kind": d.kind.value,
        "version": d.version,
        "environment": d.environment,
        "app": d.app,
        "state": d.state.value,
        "final": d.state.is_final,
        "stage": current,
        "requested_by": d.requested_by,
        "previous_version": d.previous_version,
        "reason": redact(d.reason),
        "created_at": _iso(d.created_at),
        "started_at": _iso(d.started_at),
        "finished_at": _iso(d.finished_at),
        "seconds": d.seconds,
        "failed_stage": d.failed_stage,
        "failed_host": d.failed_host,
        "error": redact(d.error),
        "approvals": [
            {"approver": a.approver, "decision": a.decision, "reason": redact(a.reason), "at": _iso(a.at)}
            for a in log.approvals
        ],
        "hosts": log.hosts,
        "grid": grid,
        "results": [
            {
                "key": f"{r.stage}@{r.host or 'all'}#{n}",
                "stage": r.stage,
                "host": r.host,
                "phase": r.phase,
                "ok": r.ok,
                "exit_code": r.exit_code,
                "started_at": _iso(r.started_at),
                "seconds": round(r.seconds, 2),
                "error": redact(r.error),
                "output": output,
                "lines": len(output.splitlines()),
            }
            for r, output, n in log.results
        ],
        "audit": [
            {
                "seq": a.seq,
                "at": _iso(a.at),
                "actor": a.actor,
                "action": a.action,
                "outcome": a.outcome,
                "detail": redact(json.dumps(a.detail, ensure_ascii=False, sort_keys=True)) if a.detail else "",
            }
            for a in log.audit
        ],
    }


# ---- the terminal -------------------------------------------------------------------------------------------
def command(
    deployment: Annotated[
        int, typer.Argument(help="the deployment's number (#12 in Slack and history)", metavar="ID", show_default=False)
    ],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="deploy.yml to read (default $DEPLOYBOT_CONFIG, else ./deploy.yml)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document instead of text")] = False,
) -> None:
    """One deployment whole: header, approvals, stages by host, every command's output, its audit rows."""
    from bot.cli_common import answering, open_service, print_answer

    with answering():
        doc = document(open_service(config).environments.log(deployment))
    print_answer(doc if as_json else text_lines(doc), as_json)


def when(iso: str | None) -> str:
    """A moment as the terminal and the page both show it (seconds, UTC), or `-`."""
    return iso[:19].replace("T", " ") + " UTC" if iso else "-"


def duration(seconds: float | None) -> str:
    """Seconds under two minutes, minutes above, as the terminal and the page both show them."""
    return "-" if seconds is None else f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _cell(c: dict) -> str:
    return c["state"] + (f" {c['seconds']:.1f}s" if c["seconds"] is not None else "")


def text_lines(doc: dict) -> Iterator[str]:
    yield f"#{doc['id']} {doc['kind']} {doc['version']} -> {doc['environment']}: {doc['state'].upper()}" + (
        f" (stage {doc['stage']})" if doc["stage"] else ""
    )
    yield (
        f"requested by {doc['requested_by']}; created {when(doc['created_at'])}, started {when(doc['started_at'])}, "
        f"finished {when(doc['finished_at'])} ({duration(doc['seconds'])})"
    )
    yield f"previous version: {doc['previous_version'] or '-'}" + (f"; reason: {doc['reason']}" * bool(doc["reason"]))
    if doc["failed_stage"]:
        yield f"failed: {doc['failed_stage']} on {doc['failed_host'] or '-'}"
    if doc["error"]:
        yield f"error: {doc['error']}"
    yield "approvals:" + ("" if doc["approvals"] else " none")
    for a in doc["approvals"]:
        yield f"  {a['decision']:<8} {a['approver']} {when(a['at'])}" + (f": {a['reason']}" if a["reason"] else "")
    yield ""
    width = max([5, *(len(r["stage"]) for r in doc["grid"])]) + 2
    cols = [
        max(len(h), *(len(_cell(r["cells"][i])) for r in doc["grid"])) + 2 if doc["grid"] else len(h) + 2
        for i, h in enumerate(doc["hosts"])
    ]
    yield "stage".ljust(width) + "".join(h.ljust(w) for h, w in zip(doc["hosts"], cols, strict=True))
    for r in doc["grid"]:
        yield r["stage"].ljust(width) + "".join(_cell(c).ljust(w) for c, w in zip(r["cells"], cols, strict=True))
    for r in doc["results"]:
        yield ""
        yield (
            f"--- {r['stage']} on {r['host'] or 'all hosts'}: {'ok' if r['ok'] else 'FAILED'} in "
            f"{r['seconds']:.2f}s, exit {r['exit_code'] if r['exit_code'] is not None else '-'} ---"
        )
        if r["error"]:
            yield f"error: {r['error']}"
        yield from (r["output"].rstrip("\n").splitlines() or ["(no output)"])
    yield ""
    yield "audit:"
    for a in doc["audit"]:
        yield f"  #{a['seq']} {when(a['at'])} {a['actor']} {a['action']} {a['outcome'] or '-'} {a['detail']}".rstrip()


# ---- the page (bot/logpage_html.py) -------------------------------------------------------------------------
def html_page(doc: dict, nonce: str) -> str:
    """The page (bot/logpage_html.py), imported when first served: the CLI's `logs` never loads it."""
    from bot.logpage_html import html_page as render

    return render(doc, nonce)
