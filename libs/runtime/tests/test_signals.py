"""A service process told to stop (SIGTERM, as Kubernetes does) stops, even while its
start is still waiting for the database: uvicorn looks at its exit flag only once the
start is over, so such a pod used to wait for its SIGKILL."""

import os
import signal
import subprocess
import sys
import time

from procure_devstack.ports import free_port


def test_a_sigterm_ends_a_start_that_waits_for_the_database(tmp_path) -> None:
    nowhere = free_port()  # nothing listens: the database is "not reachable yet"
    env = {
        **os.environ,
        "RECEIVING_DATABASE_URL": f"postgresql+asyncpg://u:p@127.0.0.1:{nowhere}/x",
        "RECEIVING_PORT": str(free_port()),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "PROCURE_DATA_DIR": str(tmp_path),
    }
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "procure_receiving"], env=env, stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + 60
            while b"database not reachable yet" not in log.read_bytes():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=15)  # its next attempt is at most 5 s away
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0, log.read_text()
