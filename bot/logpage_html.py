"""The log page as HTML: drawn once on the server from the deployment's document (bot/logpage.py), then redrawn
by its own script from that document's JSON every second while the deployment runs. The script's functions
mirror the Python ones here, markup for markup, so both draws look the same. Everything from the document
is escaped; CSS and JS are inline, under the response's nonce."""

from __future__ import annotations

from html import escape

from bot.logpage import duration, when

MARK = {"ok": "✓", "failed": "✗", "running": "…", "pending": "·", "not run": "–"}


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _head(d: dict) -> str:
    facts = [
        ("requested by", d["requested_by"]),
        ("previous version", d["previous_version"] or "-"),
        ("created", when(d["created_at"])),
        ("started", when(d["started_at"])),
        ("finished", when(d["finished_at"])),
        ("took", duration(d["seconds"])),
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
        f"{_e(when(a['at']))}{': ' + _e(a['reason']) if a['reason'] else ''}</li>"
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
        f"<tr><td>#{a['seq']}</td><td>{_e(when(a['at']))}</td><td>{_e(a['actor'])}</td>"
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
