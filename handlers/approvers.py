"""Which approver user groups a Slack user belongs to, via usergroups.users.list, cached.

The service decides who may approve from plain strings; Slack group membership is Slack's knowledge, so it
is resolved here and handed over as `groups=`. Cached for `ttl` seconds: one click must not cost one API
call per group, and a Slack outage only means members of groups cannot approve until it answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)


def is_group(entry: str) -> bool:
    return entry.startswith("S") and entry.isalnum()


class GroupCache:
    def __init__(self, client: WebClient, ttl: float = 300.0):
        self.client = client
        self.ttl = ttl
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}

    def groups_of(self, user_id: str, approvers: Iterable[str]) -> list[str]:
        """The approver groups (from `approvers`) that `user_id` is a member of; none asked when the user is
        named directly."""
        approvers = list(approvers)
        if user_id in approvers:
            return []
        return [g for g in approvers if is_group(g) and user_id in self.members(g)]

    def members(self, group: str) -> frozenset[str]:
        with self._lock:
            fetching = self._fetching.setdefault(group, threading.Lock())
        with fetching:  # one call per group at a time: simultaneous clicks share its answer
            return self._members_of(group)

    def _members_of(self, group: str) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            hit = self._members.get(group)
        if hit and hit[0] > now:
            return hit[1]
        try:
            users = frozenset(self.client.usergroups_users_list(usergroup=group).get("users") or [])
        except (SlackApiError, OSError) as exc:
            log.warning("usergroups.users.list %s failed: %s", group, exc)
            return hit[1] if hit else frozenset()  # stale beats nothing; nothing means not an approver
        with self._lock:
            self._members[group] = (now + self.ttl, users)
        return users
