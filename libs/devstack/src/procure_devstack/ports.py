"""Free TCP ports on 127.0.0.1 for the processes the devstack starts."""

import contextlib
import socket


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports. Each socket stays bound until all are chosen: a port is
    free again once its socket closes, and the kernel may hand it out twice in a row (a
    stack whose two services got one port had one of them answer for both)."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def free_port() -> int:
    return free_ports(1)[0]
