"""Slack's mrkdwn and Block Kit as terminal text, for the console adapter (the demo): pure, no I/O.

Marks are dropped rather than turned into terminal escapes, so the output reads the same in a terminal, a log
file or a test.
"""

from __future__ import annotations

import re

_EMOJI = {
    ":white_check_mark:": "[x]",
    ":x:": "[!]",
    ":hourglass_flowing_sand:": "[~]",
    ":white_circle:": "[ ]",
    ":heavy_minus_sign:": "[-]",
    ":rocket:": ">>",
    ":leftwards_arrow_with_hook:": "<<",
    ":no_entry:": "(no)",
    ":lock:": "(lock)",
    ":unlock:": "(unlock)",
    ":warning:": "(!)",
    ":rotating_light:": "(!!)",
    ":no_entry_sign:": "(x)",
    ":hourglass:": "(time)",
}
_FENCE = re.compile(r"```\n?(.*?)\n?```", re.S)
_CODE = re.compile(r"`([^`\n]+)`")
_MARKS = [re.compile(rf"(?<![\w{m}]){re.escape(m)}(?=\S)([^{m}\n]*?\S){re.escape(m)}(?![\w{m}])") for m in "*_"]


def plain(text: str) -> str:
    """mrkdwn -> terminal text: emoji codes, mentions, dates, links (`text (url)`), *bold*, _italic_ and `code`
    marks dropped, code blocks indented on their own lines, escapes undone. What is inside a code block is kept
    as it is (a path like my_app_2 keeps its underscores)."""
    parts = _FENCE.split(text)  # even: mrkdwn, odd: inside a code block
    for i in range(1, len(parts), 2):
        before, after = parts[i - 1].rstrip("\n"), parts[i + 1].lstrip("\n")
        parts[i - 1], parts[i + 1] = before, after
        block = "\n".join("  " + line for line in parts[i].strip("\n").splitlines())
        parts[i] = ("\n" if before else "") + block + ("\n" if after else "")
    return _unescape("".join(p if i % 2 else _inline(p) for i, p in enumerate(parts)))


def _inline(text: str) -> str:
    text = re.sub(r"<!date\^\d+\^[^|]*\|([^>]*)>", r"\1", text)
    text = re.sub(r"<@(\w+)(?:\|[^>]*)?>", r"@\1", text)
    text = re.sub(r"<!subteam\^(\w+)(?:\|[^>]*)?>", r"@\1", text)
    text = re.sub(r"<!(here|channel|everyone)>", r"@\1", text)
    text = re.sub(r"<#(\w+)(?:\|([^>]*))?>", lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = re.sub(r"<([a-z][a-z0-9+.-]*:[^|>]*)\|([^>]*)>", r"\2 (\1)", text)  # <url|text> -> text (url)
    text = re.sub(r"<([a-z][a-z0-9+.-]*:[^|>]*)>", r"\1", text)
    text = _CODE.sub(r"\1", text)
    for mark in _MARKS:
        text = mark.sub(r"\1", text)
    for code, mark in _EMOJI.items():  # last: their brackets must not pair up with a mark
        text = text.replace(code, mark)
    return text


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _button(node: dict) -> str:
    return f"[ {node['text']['text']} ]"


def _field(node: dict) -> str:
    """A section field ('*Label*\nvalue') on one line: 'Label: value'."""
    label, _, value = plain(node.get("text", "")).partition("\n")
    return f"{label}: {value.replace(chr(10), ', ')}" if value else label


def _input(node: dict) -> str:
    """A form field as a terminal line: its label and what it holds."""
    el, label = node.get("element") or {}, plain(node["label"]["text"])
    label += " (optional)" if node.get("optional") else ""
    kind = el.get("type", "")
    if kind == "checkboxes":
        return f"{label}: " + "  ".join(f"[ ] {plain(o['text']['text'])}" for o in el.get("options", []))
    if kind == "static_select":
        chosen = (el.get("initial_option") or {}).get("value") or "choose"
        others = [o["value"] for o in el.get("options", []) if o["value"] != chosen]
        return f"{label}: [ {chosen} ▾ ]" + (f" (also: {', '.join(others)})" if others else "")
    if kind == "conversations_select":
        return f"{label}: [ #{el.get('initial_conversation') or 'choose a channel'} ▾ ]"
    return f"{label}: [ {el.get('initial_value') or '_' * 12} ]"


def lines(params: dict) -> list[str]:
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "button":
                out.append(_button(node))
            elif kind == "actions":
                out.append("  ".join(_button(e) for e in node.get("elements", []) if e.get("type") == "button"))
            elif kind == "input":
                out.append(_input(node))
            elif isinstance(node.get("text"), str) and kind in ("mrkdwn", "plain_text"):
                out.extend(plain(node["text"]).splitlines())
            else:
                walk(node.get("text"))
                if node.get("fields"):
                    out.append("  ·  ".join(_field(f) for f in node["fields"]))
                for key in ("elements", "blocks"):
                    walk(node.get(key))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(params.get("blocks") or [])
    return out or plain(params.get("text", "")).splitlines()


def view_lines(view: dict) -> list[str]:
    """A modal or the App Home as terminal lines: its title, its blocks, its buttons."""
    title = (view.get("title") or {}).get("text") or ("App Home" if view.get("type") == "home" else "form")
    buttons = [f"[ {view[k]['text']} ]" for k in ("submit", "close") if view.get(k)]
    return [f"[{title}]", *lines(view), *(["  ".join(buttons)] if buttons else [])]
