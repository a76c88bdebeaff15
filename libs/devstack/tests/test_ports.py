"""Ports for the processes a stack starts: distinct within one call, and free."""

import socket

from procure_devstack.ports import free_ports


def test_the_ports_of_one_call_are_distinct_and_free() -> None:
    """Binding port 0 and closing, one port after the other, gave 6 to 8 repeats in 500
    on this machine: a stack whose services shared a port had one answer for both (a
    bench sweep's seeding met the 404 of another service)."""
    ports = free_ports(500)
    assert len(set(ports)) == len(ports)
    for port in ports[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
