"""The artifact template of deploy.yml: checked once, where the config is parsed, for every front (init too)."""

from __future__ import annotations

import string


def check_template(artifact: str) -> None:
    """{version} is the only value filled in: another field would raise KeyError mid-deploy, or read attributes."""
    try:
        fields = {(n, c, f) for _, n, f, c in string.Formatter().parse(artifact) if n is not None}
    except ValueError as exc:
        raise ValueError(f"{exc} (a literal brace is written {{{{ or }}}})") from None
    odd = sorted(
        "{" + n + (f"!{c}" if c else "") + (f":{f}" if f else "") + "}"
        for n, c, f in fields
        if (n, c, f) != ("version", None, "")
    )
    if odd:
        raise ValueError(f"only {{version}} may be replaced, not {', '.join(odd)}")
    if not fields:
        raise ValueError("artifact must contain {version}")
