"""URLs a host downloads or uploads reach its command on stdin, never in the command's text.

Why: the text is a process's argv on the host (sshd runs it through the login shell, ssh.bounded() through
`sh -c`), and argv is world-readable there (`ps`, /proc/PID/cmdline) for as long as the command runs. A presigned
S3 URL carries temporary credentials (X-Amz-Credential, X-Amz-Signature): any user of the host could take them.
So the script first reads the URLs from stdin into shell variables (`read`, a builtin), then hands each to curl or
wget on *their* stdin through `printf` (a builtin too, so no process of its own): `curl -K -` reads a config line
`url = "..."`, `wget -i -` a list of URLs. `curl "$U"` would put it back in curl's argv. The text holds only the
variables' names, which is all --dry-run, `deploybot logs` and stage outputs show; Command.stdin is never stored."""

from __future__ import annotations

import re

_BREAKS = re.compile(r'[\x00-\x20"\\\x7f]')  # what could end the line, or the quoted string of a curl config


def lines(*urls: str) -> str:
    """A command's stdin carrying `urls`, one a line, in the order read() takes them. Spaces, quotes, backslashes
    and control characters (none in a valid URL) are percent-encoded, as a browser would send them."""
    return "".join(_BREAKS.sub(lambda m: f"%{ord(m[0]):02X}", url) + "\n" for url in urls)


def read(*names: str) -> str:
    """The script's first line: the URLs from stdin into the shell variables `names`, in order."""
    got = " && ".join(f"IFS= read -r {name}" for name in names)
    return f'{got} || {{ echo "no URL on this command\'s stdin" >&2; exit 9; }}'


def curl_for(name: str, options: str) -> str:
    """curl with `options`, for the URL in $`name`, given on its stdin as its config."""
    return f'printf \'url = "%s"\\n\' "${name}" | curl {options} -K -'


def wget_for(name: str, options: str) -> str:
    """wget with `options`, for the URL in $`name`, given on its stdin as its list of URLs."""
    return f"printf '%s\\n' \"${name}\" | wget {options} -i -"


def http(name: str, *, curl: str, wget: str) -> str:
    """A GET (or HEAD) of $`name` with whichever of curl and wget the host has; both follow redirects and fail on
    4xx/5xx (app.upload: fetch)."""
    return (
        f"if command -v curl >/dev/null 2>&1; then {curl_for(name, '-fsSL --globoff ' + curl)}; "
        f"elif command -v wget >/dev/null 2>&1; then {wget_for(name, '-q ' + wget)}; "
        'else echo "neither curl nor wget on this host: app.upload fetch needs one" >&2; exit 9; fi'
    )
