"""An ECS service as a target: the engine's phases (preflight, upload, switch, restart) arrive as Commands whose
op names an ECS operation, and come back as Results, as over SSH. The service is one pseudo-host (`ecs:shop/web`).

preflight  describe the service (it exists, ACTIVE) and report the version its container's image tag names
upload     register a new task definition revision: the current one, with the container's image for the version
switch     update the service to the version's revision (the one registered, the one preflight saw, else the
           newest revision of the family running that image: how a rollback finds a named version)
restart    wait, bounded, until the service is stable on that revision
Health and the verification window are the engine's own HTTP probes of the health URL, as for hosts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bot.aws.config import ECSService
from bot.aws.ecs import ECSServiceClient, short
from bot.aws.session import AWSError
from bot.config import Host
from bot.targets.base import Command, Result, put_command

DESCRIBE, REGISTER, UPDATE, WAIT_STABLE = "ecs.describe", "ecs.register", "ecs.update", "ecs.wait_stable"
CURRENT_MARK = "current="  # the line bot.engine.commands.parse_current reads (the engine sits above this layer)


class NotReady(Exception):
    """The service answered, but not as the step needs (inactive, no such revision, never stable)."""


class ECSTarget:
    def __init__(self, host: Host, spec: ECSService):
        self.host, self.name, self.spec = host, host.name, spec
        self.aws = ECSServiceClient(spec)
        self._revisions: dict[str, str] = {}  # version -> the revision this process registered or saw running it
        self._lock = threading.Lock()

    def run(self, command: Command) -> Result:
        steps = {
            DESCRIBE: self._describe,
            "read_current": self._current,
            REGISTER: self._register,
            UPDATE: self._update,
            WAIT_STABLE: self._wait_stable,
            "stop_leftovers": lambda c: "nothing runs on a host for an ECS service",
        }
        if command.op not in steps:
            return Result(self.name, command, None, error=f"{self.name}: an ECS service cannot run {command.op}")
        try:
            return Result(self.name, command, 0, steps[command.op](command))
        except NotReady as exc:
            return Result(self.name, command, 1, stderr=f"{self.name}: {exc}")
        except AWSError as exc:
            return Result(self.name, command, None, error=f"{self.name}: {exc}")

    def put(self, local: Path, remote: str) -> Result:
        return Result(self.name, put_command(local, remote), None, error=f"{self.name}: an ECS service takes no files")

    def close(self) -> None:
        pass

    # ---- the steps ---------------------------------------------------------------------------------------------
    def _current(self, command: Command) -> str:
        """What the service runs: its revision and image, then the version that image names (empty: none)."""
        state = self.aws.state()
        image = self.aws.image(state.task_definition)
        version = self.spec.version_of(image)
        if version:
            self._remember(version, state.task_definition)
        return f"{short(state.task_definition)} runs {image}\n{CURRENT_MARK}{version or ''}"

    def _describe(self, command: Command) -> str:
        """Preflight: the service exists and is ACTIVE; a deploy also needs it settled (one deployment), a rollback
        (`version`) a revision of that version."""
        state = self.aws.state()
        if state.status != "ACTIVE":
            raise NotReady(f"{self.aws.where} is {state.status}, not ACTIVE")
        if not command.version and len(state.deployments) > 1:  # a rollback may go ahead: it ends an incident
            raise NotReady(f"another deployment of {self.aws.where} is in progress ({state.describe()})")
        current = self._current(command)
        if command.version:
            self._revision(command.version)
        return f"{self.aws.where}: ACTIVE, {state.describe()}\n{current}"

    def _register(self, command: Command) -> str:
        assert command.version, "a revision is registered for a version"
        base = self.aws.state().task_definition
        image = self.spec.image_for(command.version)
        made = self.aws.register(base, image)
        self._remember(command.version, made)
        return f"registered {short(made)}: {short(base)} with container {self.spec.container} running {image}"

    def _update(self, command: Command) -> str:
        assert command.version, "the service is moved to a version's revision"
        arn = self._revision(command.version)
        self.aws.update(arn)
        return f"{self.aws.where} now asks for {short(arn)} ({self.spec.image_for(command.version)})"

    def _wait_stable(self, command: Command) -> str:
        assert command.version, "stable on a version's revision"
        arn = self._revision(command.version)
        limit = command.timeout or self.spec.stable_timeout
        deadline = time.monotonic() + limit
        while True:
            state = self.aws.state()
            if state.stable_on(arn):
                return f"{self.aws.where} is stable on {short(arn)}: {state.describe()}"
            failed = state.failed_rollout()
            if failed:
                raise NotReady(f"ECS stopped the deployment of {short(arn)}: {failed}")
            if time.monotonic() >= deadline:
                on = f"on {short(state.task_definition)}, " if state.task_definition != arn else ""
                raise NotReady(f"not stable on {short(arn)} after {limit:g}s: {on}{state.describe()}")
            time.sleep(min(self.spec.poll, max(0.0, deadline - time.monotonic())))

    # ---- which revision is a version ---------------------------------------------------------------------------
    def _remember(self, version: str, arn: str) -> None:
        with self._lock:
            self._revisions[version] = arn

    def _revision(self, version: str) -> str:
        with self._lock:
            known = self._revisions.get(version)
        if known:
            return known
        image = self.spec.image_for(version)
        family = self.aws.definition(self.aws.state().task_definition).get("family", "")
        found = self.aws.revision_with(family, image)
        if found is None:
            raise NotReady(f"no active revision of task definition {family} runs {image}")
        self._remember(version, found)
        return found
