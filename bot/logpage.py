"""One deployment whole, three ways: a JSON document, an HTML page that redraws itself from that document while the
deployment runs, and lines for the terminal (the `deploybot logs` command, defined here beside its renderers).
Command output is stored redacted (the engine redacts it before any subscriber sees it); every other text passes
through the redactor here again, whatever process renders it. Output is not redacted twice: at ~0.2 s a MB, a page
polled every second would take the interpreter from Slack's acks. The page needs nothing from outside: CSS and
JS are inline, under a nonce. Importing this module loads nothing heavy (the CLI imports it to
register `logs`, and --help must stay fast); what a command needs is imported when it runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from bot.service.environments import DeploymentLog

MARK = {"ok": "✓", "failed": "✗", "running": "…", "pending": "·", "not run": "–"}


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
    from bot import cli

    with cli._answering():
        doc = document(cli._service(config).environments.log(deployment))
    cli._print(doc if as_json else text_lines(doc), as_json)


def _t(iso: str | None) -> str:
    return iso[:19].replace("T", " ") + " UTC" if iso else "-"


def _secs(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _cell(c: dict) -> str:
    return c["state"] + (f" {c['seconds']:.1f}s" if c["seconds"] is not None else "")


def text_lines(doc: dict) -> Iterator[str]:
    yield f"#{doc['id']} {doc['kind']} {doc['version']} -> {doc['environment']}: {doc['state'].upper()}" + (
        f" (stage {doc['stage']})" if doc["stage"] else ""
    )
    yield (
        f"requested by {doc['requested_by']}; created {_t(doc['created_at'])}, started {_t(doc['started_at'])}, "
        f"finished {_t(doc['finished_at'])} ({_secs(doc['seconds'])})"
    )
    yield f"previous version: {doc['previous_version'] or '-'}" + (f"; reason: {doc['reason']}" * bool(doc["reason"]))
    if doc["failed_stage"]:
        yield f"failed: {doc['failed_stage']} on {doc['failed_host'] or '-'}"
    if doc["error"]:
        yield f"error: {doc['error']}"
    yield "approvals:" + ("" if doc["approvals"] else " none")
    for a in doc["approvals"]:
        yield f"  {a['decision']:<8} {a['approver']} {_t(a['at'])}" + (f": {a['reason']}" if a["reason"] else "")
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
        yield f"  #{a['seq']} {_t(a['at'])} {a['actor']} {a['action']} {a['outcome'] or '-'} {a['detail']}".rstrip()


# ---- the page -----------------------------------------------------------------------------------------------
def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _head(d: dict) -> str:
    facts = [
        ("requested by", d["requested_by"]),
        ("previous version", d["previous_version"] or "-"),
        ("created", _t(d["created_at"])),
        ("started", _t(d["started_at"])),
        ("finished", _t(d["finished_at"])),
        ("took", _secs(d["seconds"])),
    ]
    if d["reason"]:
        facts.append(("reason", d["reason"]))
    if d["failed_stage"]:
        facts.append(("failed at", f"{d['failed_stage']} on {d['failed_host'] or '-'}"))
    live = "" if d["final"] else '<span class="live">live: updates every second</span>'
    return (
        f"<h1>#{d['id']} {_e(d['kind'])} <b>{_e(d['version'])}</b> → <b>{_e(d['environment'])}</b> "
        f'<span class="state s-{_e(d["state"])}" id="state">{_e(d["state"].replace("_", " "))}</span>{live}</h1>'
        "<dl>"
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
        + "</dl>"
        + (f'<pre class="err">{_e(d["error"])}</pre>' if d["error"] else "")
    )


def _approvals(d: dict) -> str:
    rows = "".join(
        f'<li class="{_e(a["decision"])}">{_e(a["decision"])}d by <b>{_e(a["approver"])}</b> at '
        f"{_e(_t(a['at']))}{': ' + _e(a['reason']) if a['reason'] else ''}</li>"
        for a in d["approvals"]
    )
    return "<h2>Approvals</h2>" + (f"<ul>{rows}</ul>" if rows else "<p>none</p>")


def _grid(d: dict) -> str:
    head = "<tr><th>stage</th>" + "".join(f"<th>{_e(h)}</th>" for h in d["hosts"]) + "</tr>"
    body = ""
    for r in d["grid"]:
        body += f"<tr><th>{_e(r['stage'])}</th>"
        for c in r["cells"]:
            culprit = " culprit" if (r["stage"], c["host"]) == (d["failed_stage"], d["failed_host"]) else ""
            took = f" {c['seconds']:.{2 if c['seconds'] < 10 else 1}f}s" if c["seconds"] is not None else ""
            body += (
                f'<td class="c-{_e(c["state"]).replace(" ", "-")}{culprit}" data-stage="{_e(r["stage"])}" '
                f'data-host="{_e(c["host"])}" data-state="{_e(c["state"])}">{MARK[c["state"]]} '
                f"{_e(c['state'])}{took}</td>"
            )
        body += "</tr>"
    return f"<h2>Stages by host</h2><table class=grid>{head}{body}</table>"


def _outputs(d: dict) -> str:
    out = ""
    for r in d["results"]:
        out += (
            f'<details id="{_e(r["key"])}" class="{"ok" if r["ok"] else "failed"}"{"" if r["ok"] else " open"}>'
            f"<summary>{MARK['ok' if r['ok'] else 'failed']} <b>{_e(r['stage'])}</b> on "
            f"<b>{_e(r['host'] or 'all hosts')}</b> · {'ok' if r['ok'] else 'failed'} in {r['seconds']:.2f}s · "
            f"exit {_e(r['exit_code'] if r['exit_code'] is not None else '-')} · {r['lines']} "
            f"line{'' if r['lines'] == 1 else 's'}</summary>"
            + (f'<pre class="err">{_e(r["error"])}</pre>' if r["error"] else "")
            + f'<pre class="out">{_e(r["output"]) or "(no output)"}</pre></details>'
        )
    return "<h2>Output</h2>" + (out or "<p>nothing ran yet</p>")


def _audit(d: dict) -> str:
    rows = "".join(
        f"<tr><td>#{a['seq']}</td><td>{_e(_t(a['at']))}</td><td>{_e(a['actor'])}</td>"
        f"<td>{_e(a['action'])}</td><td>{_e(a['outcome'] or '-')}</td><td><code>{_e(a['detail'])}</code>"
        f"</td></tr>"
        for a in d["audit"]
    )
    return (
        "<h2>Audit trail</h2><table class=audit><tr><th>seq</th><th>at</th><th>actor</th><th>action</th>"
        f"<th>outcome</th><th>detail</th></tr>{rows}</table>"
    )


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:0;padding:1.2em 2em;color:#1d1c1d;background:#fafafa}
h1{font-size:1.35em;margin:0 0 .4em}h2{font-size:1.1em;margin:1.4em 0 .5em;border-bottom:1px solid #ddd}
dl{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;margin:0}dt{color:#666}dd{margin:0}
.state{font-size:.8em;padding:.15em .6em;border-radius:1em;background:#ddd;margin-left:.4em;vertical-align:middle}
.s-succeeded{background:#cdeccd}.s-running,.s-approved,.s-rolling_back{background:#ffeab0}
.s-failed,.s-rolled_back,.s-rollback_failed,.s-interrupted{background:#f7c6c6}
.live{font-size:.7em;color:#8a6d00;margin-left:.8em;font-weight:normal}table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #ddd;padding:.3em .7em;text-align:left}.grid td{min-width:7em;white-space:nowrap}
.c-ok{background:#e3f5e3}.c-failed{background:#fbd5d5;font-weight:bold}.c-running{background:#fff3c4}
.c-pending{color:#999}.c-not-run{color:#bbb}.culprit{outline:3px solid #c00}
details{margin:.3em 0;background:#fff;border:1px solid #ddd;border-radius:4px}
summary{padding:.35em .6em;cursor:pointer}details.failed>summary{background:#fbd5d5}
pre{margin:0;padding:.6em;overflow:auto;max-height:36em;font-size:12.5px}pre.out{background:#1e1e1e;color:#e8e8e8}
pre.err{background:#fff0f0;color:#900;white-space:pre-wrap}.audit code{font-size:12px;word-break:break-all}
.note{color:#900}"""

JS = r"""(function () {
"use strict";
var url = location.pathname + ".json" + location.search, last = null;
var M = {"ok": "✓", "failed": "✗", "running": "…", "pending": "·", "not run": "–"};
var ESC = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"};
function e(s) { return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) { return ESC[c]; }); }
function t(s) { return s ? s.slice(0, 19).replace("T", " ") + " UTC" : "-"; }
function secs(s) { return s == null ? "-" : s < 120 ? s.toFixed(1) + "s" : (s / 60).toFixed(1) + " min"; }
function head(d) {
  var f = [["requested by", d.requested_by], ["previous version", d.previous_version || "-"], ["created",
    t(d.created_at)], ["started", t(d.started_at)], ["finished", t(d.finished_at)], ["took", secs(d.seconds)]];
  if (d.reason) f.push(["reason", d.reason]);
  if (d.failed_stage) f.push(["failed at", d.failed_stage + " on " + (d.failed_host || "-")]);
  return "<h1>#" + d.id + " " + e(d.kind) + " <b>" + e(d.version) + "</b> → <b>" + e(d.environment) +
    '</b> <span class="state s-' + e(d.state) + '" id="state">' + e(d.state.replace(/_/g, " ")) + "</span>" +
    (d.final ? "" : '<span class="live">live: updates every second</span>') + "</h1><dl>" +
    f.map(function (x) { return "<dt>" + e(x[0]) + "</dt><dd>" + e(x[1]) + "</dd>"; }).join("") + "</dl>" +
    (d.error ? '<pre class="err">' + e(d.error) + "</pre>" : "");
}
function approvals(d) {
  var r = d.approvals.map(function (a) {
    return '<li class="' + e(a.decision) + '">' + e(a.decision) + "d by <b>" + e(a.approver) + "</b> at " + e(t(a.at)) +
      (a.reason ? ": " + e(a.reason) : "") + "</li>";
  }).join("");
  return "<h2>Approvals</h2>" + (r ? "<ul>" + r + "</ul>" : "<p>none</p>");
}
function cell(d, stage, c) {
  var k = stage === d.failed_stage && c.host === d.failed_host ? " culprit" : "";
  return '<td class="c-' + e(c.state).replace(" ", "-") + k + '" data-stage="' + e(stage) + '" data-host="' +
    e(c.host) + '" data-state="' + e(c.state) + '">' + M[c.state] + " " + e(c.state) +
    (c.seconds == null ? "" : " " + c.seconds.toFixed(c.seconds < 10 ? 2 : 1) + "s") + "</td>";
}
function grid(d) {
  var h = "<tr><th>stage</th>" + d.hosts.map(function (x) { return "<th>" + e(x) + "</th>"; }).join("") + "</tr>";
  return "<h2>Stages by host</h2><table class=grid>" + h + d.grid.map(function (r) {
    return "<tr><th>" + e(r.stage) + "</th>" + r.cells.map(function (c) { return cell(d, r.stage, c); }).join("") +
      "</tr>";
  }).join("") + "</table>";
}
function outputs(d, open) {
  var o = d.results.map(function (r) {
    var id = r.key, s = r.ok ? "ok" : "failed", op = id in open ? open[id] : !r.ok;
    return '<details id="' + e(id) + '" class="' + s + '"' + (op ? " open" : "") + "><summary>" + M[s] + " <b>" +
      e(r.stage) + "</b> on <b>" + e(r.host || "all hosts") + "</b> · " + s + " in " + r.seconds.toFixed(2) +
      "s · exit " + e(r.exit_code == null ? "-" : r.exit_code) + " · " + r.lines +
      (r.lines === 1 ? " line" : " lines") + "</summary>" +
      (r.error ? '<pre class="err">' + e(r.error) + "</pre>" : "") +
      '<pre class="out">' + (e(r.output) || "(no output)") + "</pre></details>";
  }).join("");
  return "<h2>Output</h2>" + (o || "<p>nothing ran yet</p>");
}
function audit(d) {
  return "<h2>Audit trail</h2><table class=audit><tr><th>seq</th><th>at</th><th>actor</th><th>action</th>" +
    "<th>outcome</th><th>detail</th></tr>" + d.audit.map(function (a) {
      return "<tr><td>#" + a.seq + "</td><td>" + e(t(a.at)) + "</td><td>" + e(a.actor) + "</td><td>" +
        e(a.action) + "</td><td>" + e(a.outcome || "-") + "</td><td><code>" + e(a.detail) + "</code></td></tr>";
    }).join("") + "</table>";
}
function $(id) { return document.getElementById(id); }
function draw(d) {  // keeps each output open or closed as the reader left it
  var open = {}; document.querySelectorAll("#outputs details").forEach(function (x) { open[x.id] = x.open; });
  $("head").innerHTML = head(d); $("approvals").innerHTML = approvals(d); $("grid").innerHTML = grid(d);
  $("outputs").innerHTML = outputs(d, open); $("audit").innerHTML = audit(d);
  document.body.dataset.state = d.state; document.title = "#" + d.id + " " + d.kind + " " + d.version + ": " + d.state;
}
function poll() {
  fetch(url, {cache: "no-store", credentials: "omit"}).then(function (r) {
    if (r.ok) return r.text();
    $("note").textContent = "This link no longer opens the deployment (" + r.status + "); take a fresh one from its " +
      "Slack message.";
    throw "stop";
  }).then(function (x) {
    var d = JSON.parse(x);
    if (x !== last) { last = x; draw(d); }
    if (!d.final) setTimeout(poll, 1000);
  }).catch(function (x) { if (x !== "stop") setTimeout(poll, 3000); });  // the bot restarting: try again
}
if (document.body.dataset.final !== "1") setTimeout(poll, 1000);
})();"""


def html_page(doc: dict, nonce: str) -> str:
    title = _e(f"#{doc['id']} {doc['kind']} {doc['version']} → {doc['environment']}: {doc['state']}")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width,initial-scale=1"><meta name="referrer" content="no-referrer">'
        f'<title>{title}</title><style nonce="{nonce}">{CSS}</style></head>'
        f'<body data-final="{1 if doc["final"] else 0}" data-state="{_e(doc["state"])}">'
        f'<header id="head">{_head(doc)}</header><p class="note" id="note"></p>'
        f'<section id="approvals">{_approvals(doc)}</section><section id="grid">{_grid(doc)}</section>'
        f'<section id="outputs">{_outputs(doc)}</section><section id="audit">{_audit(doc)}</section>'
        f'<script nonce="{nonce}">{JS}</script></body></html>'
    )
