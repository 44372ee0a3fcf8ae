"""Free TCP ports for the servers the tooling starts."""

from __future__ import annotations

import contextlib
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at `host` now (the kernel's choice)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports nothing listens on at `host` now. Each socket stays bound until
    all are chosen: ports asked for one after another may repeat once the first socket is
    closed (seen: SeaweedFS got one port for its master and its S3 gateway, and exited)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports
