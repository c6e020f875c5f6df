"""The answers to `/deploy status` and `/deploy history`: what runs where, and what ran lately. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.domain import DeploymentRecord
from bot.service import EnvironmentStatus, HostStatus
from handlers.block_kit import Blocks, duration, esc, section, user


def status_blocks(statuses: list[EnvironmentStatus]) -> tuple[str, Blocks]:
    blocks: Blocks = []
    for st in statuses:
        blocks.append(section(_status_text(st)))
        blocks.append({"type": "divider"})
    return "\n".join(_status_text(st) for st in statuses), blocks[:-1]


def _status_text(st: EnvironmentStatus) -> str:
    drift = " :warning: *drift*" if st.drift else ""
    lines = [f"*{esc(st.environment)}*: {esc(st.recorded_version or 'nothing deployed yet')}{drift}"]
    lines += [host_line(h) for h in st.hosts]
    if st.in_progress:
        d = st.in_progress
        stage = esc(d.meta.get("stage", "-"))
        lines.append(
            f":hourglass_flowing_sand: in progress: #{d.id} {d.kind.value} {esc(d.version)} by "
            f"{user(d.requested_by)} ({d.state.value.replace('_', ' ')}, stage {stage})"
        )
    if st.last:
        d = st.last
        lines.append(
            f"Last: #{d.id} {d.kind.value} {esc(d.version)} by {user(d.requested_by)} "
            f"{_when(d.finished_at or d.created_at)}: {d.state.value.replace('_', ' ')}"
        )
    if st.lock:
        lines.append(f":lock: locked by {user(st.lock.holder)}: {esc(st.lock.reason, 300)}")
    return "\n".join(lines)


def host_line(h: HostStatus) -> str:
    """One host as `/deploy status` and App Home show it: its release, what it answers, its slots, its error."""
    answer = f"answers {esc(h.answering, 100)}" if h.answering else "no health answer"
    return (
        f"• `{esc(h.name, 100)}` current {esc(h.release or '-', 100)}, {answer}"
        + (f", {esc(h.slots_text, 200)}" if h.slots else "")
        + (f" ({esc(h.error, 200)})" if h.error else "")
    )


def _when(at: datetime) -> str:
    return f"<!date^{int(at.timestamp())}^{{date_short}} {{time}}|{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC>"


def history_text(rows: list[DeploymentRecord]) -> str:
    if not rows:
        return "No deployments yet."
    lines = []
    for d in rows:
        tail = f" ({esc(d.failed_stage)} on {esc(d.failed_host or '-')})" if d.failed_stage else ""
        lines.append(
            f"#{d.id} {_when(d.created_at)} *{esc(d.environment)}* {d.kind.value} {esc(d.version)} "
            f"{d.state.value.replace('_', ' ')} {duration(d.seconds)} by {user(d.requested_by)}{tail}"
        )
    return "\n".join(lines)
