"""Free loopback addresses and UDP ports for the rig.

Never assume 127.0.0.1:5060 is free: another engineer's Kamailio may hold it.  Every peer gets
its own ``127.0.0.x`` address (Linux routes all of 127.0.0.0/8 to ``lo``) and a port that was
bind-tested just before it is handed out.  Handed-out pairs are remembered for the life of the
process, so two fixtures in one session never get the same pair even if the first peer has not
bound it yet.  Under pytest-xdist each worker walks its own third octet (127.0.<1+N>.x for
worker gwN), so parallel workers cannot collide either.

The bind test closes the race only partly (a foreign process can still grab the port between
the test and the peer's own bind); peers that fail to bind report it in their logs.
"""
from __future__ import annotations

import errno
import os
import random
import socket
import struct
import threading
import time
from typing import NamedTuple

# Ports are drawn below the Linux ephemeral range (32768-60999) so that the kernel's automatic
# port choice for unbound sockets never takes a port we handed out, and above pyVoIP's default
# RTP range start.  Override with RIG_PORT_LOW / RIG_PORT_HIGH if needed.
PORT_LOW = int(os.environ.get("RIG_PORT_LOW", "20000"))
PORT_HIGH = int(os.environ.get("RIG_PORT_HIGH", "32000"))

_lock = threading.Lock()
_taken: set[tuple[str, int]] = set()
_rng = random.Random(os.getpid() ^ time.monotonic_ns())
_host_cursor = _rng.randrange(0, 253)


class Endpoint(NamedTuple):
    """A UDP address: ``host`` and ``port``; ``str()`` gives ``host:port``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def hostport(self) -> str:
        """``host:port`` (same as ``str()``)."""
        return f"{self.host}:{self.port}"


def _worker_octet() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return 1 + int(worker[2:]) % 250
    return 0


def udp_port_is_free(host: str, port: int) -> bool:
    """True if a UDP socket can bind ``host:port`` right now (nothing holds it or the wildcard)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, port))
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            return False
        raise
    finally:
        s.close()
    return True


def udp_port_bound(host: str, port: int) -> bool:
    """True if some socket is bound to ``host:port`` (or the wildcard) per /proc/net/udp.

    Unlike ``udp_port_is_free`` this never binds the port itself, so it cannot steal the port
    from a peer that is binding it at the same moment.
    """
    want = {(host, port), ("0.0.0.0", port)}
    try:
        with open("/proc/net/udp") as fh:
            next(fh)
            for line in fh:
                local = line.split()[1]
                hex_ip, hex_port = local.split(":")
                ip = socket.inet_ntoa(struct.pack("<I", int(hex_ip, 16)))
                if (ip, int(hex_port, 16)) in want:
                    return True
    except FileNotFoundError:  # not Linux: fall back to the bind test
        return not udp_port_is_free(host, port)
    return False


def wait_udp_port_free(host: str, port: int, timeout_s: float = 5.0) -> bool:
    """Poll (every 20 ms, at most ``timeout_s``) until ``host:port`` can be bound; True if it can."""
    deadline = time.monotonic() + timeout_s
    while True:
        if udp_port_is_free(host, port):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def wait_udp_port_bound(host: str, port: int, timeout_s: float = 5.0) -> bool:
    """Poll (20 ms) until something has bound ``host:port`` (/proc/net/udp); True if it did in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        if udp_port_bound(host, port):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def loopback_host() -> str:
    """The next loopback address of this process's walk: 127.0.W.2 … 127.0.W.254 (never .1)."""
    global _host_cursor
    with _lock:
        x = 2 + _host_cursor % 253
        _host_cursor += 1
    return f"127.0.{_worker_octet()}.{x}"


def _claim(host: str, ports: range) -> bool:
    # caller holds _lock
    if any((host, p) in _taken for p in ports):
        return False
    if not all(udp_port_is_free(host, p) for p in ports):
        return False
    _taken.update((host, p) for p in ports)
    return True


def free_udp_port(host: str = "127.0.0.1", *, attempts: int = 200) -> int:
    """A UDP port on ``host`` that binds now and was not handed out before in this process."""
    with _lock:
        for _ in range(attempts):
            port = _rng.randrange(PORT_LOW, PORT_HIGH)
            if _claim(host, range(port, port + 1)):
                return port
    raise RuntimeError(f"no free UDP port on {host} after {attempts} attempts")


def free_endpoint(host: str | None = None) -> Endpoint:
    """A fresh ``Endpoint``: a new 127.0.0.x address (unless ``host`` is given) and a free port."""
    h = host if host is not None else loopback_host()
    return Endpoint(h, free_udp_port(h))


def free_rtp_range(host: str = "127.0.0.1", size: int = 4, *, attempts: int = 200) -> tuple[int, int]:
    """``(low, high)`` inclusive: ``size`` consecutive free UDP ports starting at an even port."""
    if size < 1:
        raise ValueError("size must be >= 1")
    with _lock:
        for _ in range(attempts):
            low = _rng.randrange(PORT_LOW, PORT_HIGH - size) & ~1
            if _claim(host, range(low, low + size)):
                return low, low + size - 1
    raise RuntimeError(f"no free block of {size} UDP ports on {host} after {attempts} attempts")
