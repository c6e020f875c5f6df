"""Test lab: real hosts as network namespaces, each with its own address, sshd, /srv and /root."""

from tests.lab.hosts import HostLab, LabHost
from tests.lab.system import LabBusy, LabUnavailable, Proc

__all__ = ["HostLab", "LabBusy", "LabHost", "LabUnavailable", "Proc"]
