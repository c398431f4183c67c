"""Who follows an open attempt: an owner with a lease that it renews while it follows the job.

An attempt a provider may have accepted is followed by exactly one process at a time, which saves its images
and bills it once. That process holds the attempt's lease (its owner id and an expiry) and renews it while it
follows; another process (`jobs resume`, a server starting, another replica on a shared store) takes the
attempt up only once the lease is free: let go on purpose, expired, or held by a process on this host that
has stopped (its pid is gone), which tells a crash at once instead of after the expiry.

An owner is unique across machines and runs: host name, pid, and a token drawn at start that also names the
process's pid space (the machine's boot id and its pid namespace). A pid is only looked up when the holder's pid
space is this process's own: replicas in containers that share a host name (host networking) or machines with one
name never take each other's live leases for stopped processes; they wait for the expiry.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fluxroute.store.records import AttemptRecord

# how long a lease lasts without renewal, and how often the process following the job renews it
LEASE = timedelta(seconds=60)
RENEW_EVERY_S = 15.0


def _pid_space() -> str:
    """A short id of where this process's pid means something: the machine's boot id and its pid namespace."""
    parts = []
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
        parts.append(boot.read().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:8] if parts else ""


_PID_SPACE = _pid_space()
# tells this process from an earlier one that had the same pid, and (after the dot) names its pid space
_TOKEN = f"{uuid.uuid4().hex[:12]}.{_PID_SPACE}"


@dataclass(frozen=True)
class Owner:
    """A process that can follow jobs: its host, pid and a token unique to this run of it."""

    host: str
    pid: int
    token: str

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.token}"

    @classmethod
    def parse(cls, text: str) -> Owner:
        parts = text.rsplit("/", 2)
        if len(parts) == 3 and parts[1].isdigit():
            return cls(parts[0], int(parts[1]), parts[2])
        return cls(text, 0, "")

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"


def this_process() -> Owner:
    """The owner id of the running process."""
    return Owner(socket.gethostname(), os.getpid(), _TOKEN)


def lease_free(owner: str | None, until: datetime | None, now: datetime, taker: Owner | None = None) -> bool:
    """May `taker` (default: this process) take up an attempt whose lease is (`owner`, `until`)? Yes when nobody
    holds it, it has expired, or its owner is a stopped process on this host; never while `taker` holds it."""
    if owner is None:
        return True
    holder = Owner.parse(owner)
    me = taker or this_process()
    if holder == me:
        return False
    if until is not None and until <= now:
        return True
    return holder.host == socket.gethostname() and _same_pid_space(holder) and _stopped(holder.pid)


def _same_pid_space(holder: Owner) -> bool:
    """Whether `holder`'s pid can be looked up here: its token names this pid space (a token without one, from a
    version before pid spaces, is taken to be of this host, as that version did)."""
    _, dot, space = holder.token.rpartition(".")
    return not dot or space == _PID_SPACE


def _stopped(pid: int) -> bool:
    """Whether the process `pid` on this host has stopped (gone, or a zombie not yet reaped)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[-1].split()[0] == "Z"
    return False


def attempt_free(attempt: AttemptRecord, now: datetime | None = None) -> bool:
    """Whether this process may take up the open `attempt` (see `lease_free`)."""
    return lease_free(attempt.lease_owner, attempt.lease_until, now or datetime.now(UTC))
