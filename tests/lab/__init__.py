"""Test lab: real hosts as network namespaces, each with its own address, sshd and /srv."""

from tests.lab.hosts import HostLab, LabHost, LabUnavailable

__all__ = ["HostLab", "LabHost", "LabUnavailable"]
