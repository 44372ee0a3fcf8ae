"""Other hosts on this machine, for tests that must show a process needs nothing of the
central host but its network services.

`Network(n)` makes a bridge in the root namespace (the central host, address `.central`) and
`n` network namespaces (`.hosts`), each joined to the bridge by a veth pair, with its own
address, its own loopback and a default route via the bridge. A process started in one
(`host.prefix + command`) reaches the central host only at `.central`: the central host's
loopback (127.0.0.1 in the namespace is the namespace's own) is out of reach, so a service
there must be bound to the bridge address or relayed to it (`TcpRelay`). (Linux answers
for each of its addresses on every interface: a service bound to 0.0.0.0 is reachable from
the namespaces too.) The namespaces share the machine's file system: what a test wants kept
apart on disk it points elsewhere. Needs root and iproute2; `netns_available()` says why
not. A process killed before it cleans up leaves its namespaces (`ip netns list`:
chestnet-<pid>-...) and bridge (cnbr<pid>...) behind."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from devtools.lifetimes import StartStop

_serial = itertools.count()


def netns_available() -> str | None:
    """None when namespaces, veth pairs and bridges can be made here; else the reason."""
    if os.geteuid() != 0:
        return "test hosts need root (ip netns add, ip link add)"
    if shutil.which("ip") is None:
        return "test hosts need iproute2's `ip`"
    name = f"cnchk{os.getpid() % 100000}"
    for add, delete in (
        (["netns", "add", name], ["netns", "delete", name]),
        (["link", "add", name, "type", "bridge"], ["link", "delete", name]),
    ):
        refused = subprocess.run(["ip", *add], capture_output=True, text=True)
        if refused.returncode != 0:
            return f"`ip {' '.join(add[:2])}` refused: {refused.stderr.strip()}"
        subprocess.run(["ip", *delete], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str

    @property
    def prefix(self) -> list[str]:
        """Run a command on this host: `[*host.prefix, *command]`. `ip netns exec` execs
        the command (no fork), so its pid and process group are the command's."""
        return ["ip", "netns", "exec", self.namespace]

    def can_connect(self, host: str, port: int, timeout: float = 3.0) -> bool:
        """Whether a TCP connection from this host to host:port is accepted."""
        probe = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), "
        probe += f"timeout={timeout}).close()"
        command = [*self.prefix, sys.executable, "-c", probe, host, str(port)]
        return subprocess.run(command, capture_output=True, timeout=timeout + 30).returncode == 0


class Network(StartStop):
    """A bridge with `hosts` namespaces on it, named and numbered for this process so that
    runs side by side do not meet. A context manager: on exit (and when making it failed
    half-way) every namespace, veth pair and the bridge are deleted."""

    def __init__(self, hosts: int) -> None:
        tag = f"{os.getpid() % 100000}{next(_serial)}"  # interface names: 15 characters
        self.bridge = f"cnbr{tag}"
        subnet = _free_subnet()
        self.central = f"{subnet}.1"
        self.hosts = [Host(f"chestnet-{tag}-{i}", f"{subnet}.{10 + i}") for i in range(hosts)]
        self._veths = [f"cnv{tag}h{i}" for i in range(hosts)]
        self._made: list[list[str]] = []  # `ip` arguments that undo what was made, in order

    def start(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(["link", "delete", self.bridge])
        _ip("addr", "add", f"{self.central}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host, veth in zip(self.hosts, self._veths, strict=True):
            self._add_host(host, veth)

    def _add_host(self, host: Host, veth: str) -> None:
        _ip("netns", "add", host.namespace)
        self._made.append(["netns", "delete", host.namespace])
        peer = f"{veth[:-2]}p{veth[-1]}"
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        self._made.append(["link", "delete", veth])  # deletes its peer too
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("link", "set", peer, "netns", host.namespace)
        inside = ["-n", host.namespace]
        _ip(*inside, "link", "set", peer, "name", "eth0")
        _ip(*inside, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip(*inside, "link", "set", "eth0", "up")
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "route", "add", "default", "via", self.central)

    def stop(self) -> None:
        """Delete what was made, last first; a veth pair goes with its namespace."""
        while self._made:
            subprocess.run(["ip", *self._made.pop()], capture_output=True)


def _free_subnet() -> str:
    """A 10.231.x.0/24 that no interface or route of this machine uses."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    used += subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for third in random.sample(range(1, 255), 254):
        if f"10.231.{third}." not in used:
            return f"10.231.{third}"
    raise RuntimeError("no free 10.231.x.0/24 subnet")


class TcpRelay(StartStop):
    """Publishes a service this machine has on loopback (the central PostgreSQL, which must
    not be reconfigured) at another local address: connections to `.host`:`.port` are
    piped, in threads of this process, to `target`. A context manager; stopping it closes
    every connection it carries."""

    def __init__(self, host: str, target: tuple[str, int]) -> None:
        self.host, self.target = host, target
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._spawn(self._accept_loop)

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            self._spawn(self._pipe, client, server)
            self._spawn(self._pipe, server, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy one direction until end of stream, then pass the end on (half-close)."""
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            for sock in (source, sink):  # one side reset: drop the connection both ways
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        finally:
            self._release(source, sink)

    def _release(self, source: socket.socket, sink: socket.socket) -> None:
        """Close the pair once both directions have ended (the second pipe to end does)."""
        with self._lock:
            self._sockets.discard(source)
            if sink not in self._sockets:
                source.close()
                sink.close()
