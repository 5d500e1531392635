"""Stopping and starting the local brokers, for the tests that restart one mid-work.

RabbitMQ is restarted as a whole node (``rabbitmqctl stop``, then ``rabbitmq-server
-detached``): on RabbitMQ 3.10 a ``stop_app`` / ``start_app`` cycle can leave the quorum
queues' dead-letter supervisor dead, which breaks every later test against that server.
Each start waits until the server answers again.
"""

from __future__ import annotations

import socket
import subprocess
import time

NATS_BIN = "/usr/sbin/nats-server"
NATS_START = [
    "start-stop-daemon", "--start", "--oknodo", "--background", "--exec", NATS_BIN, "--",
    "-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server",
    "-l", "/var/log/nats-server.log",
]  # fmt: skip


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing answers on 127.0.0.1:{port} after {timeout:g} s")


def stop_rabbitmq() -> None:
    subprocess.run(["rabbitmqctl", "-q", "stop"], check=True, timeout=120)


def start_rabbitmq(timeout: float = 180.0) -> None:
    subprocess.run(["rabbitmq-server", "-detached"], check=False, timeout=60)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = subprocess.run(
            ["rabbitmqctl", "-q", "await_startup", "--timeout", "10"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        if ready.returncode == 0:
            _wait_port(5672, 30)
            return
        time.sleep(1)
    raise AssertionError("RabbitMQ did not come back")


def stop_nats() -> None:
    stop = ["start-stop-daemon", "--stop", "--oknodo", "--exec", NATS_BIN, "--retry", "10"]
    subprocess.run(stop, check=True, timeout=60)


def start_nats() -> None:
    subprocess.run(NATS_START, check=True, timeout=60)
    _wait_port(4222, 30)
