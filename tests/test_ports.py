"""The ports the tooling gives its servers (devtools.ports): several asked for at once are
distinct and free. Seen in CI: two ports asked for one after another were the same, and
SeaweedFS, given it for its master and its S3 gateway, exited."""

from __future__ import annotations

import socket

from devtools.ports import free_port, free_ports


def test_ports_asked_for_together_are_distinct_and_each_can_be_bound():
    ports = free_ports(40)
    assert len(set(ports)) == 40
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_one_free_port_can_be_bound():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
