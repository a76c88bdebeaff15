"""Start, probe, stop and restart a real local Kafka broker through LocalKafka."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from procure_devstack.kafka import (
    KafkaAlreadyRunningError,
    LocalKafka,
    api_versions,
    stop_from_pidfile,
)
from procure_devstack.ports import free_ports

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java 17+ runtime"),
]

API_PRODUCE, API_FETCH, API_METADATA, API_VERSIONS = 0, 1, 3, 18


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalKafka]:
    port, controller = free_ports(2)
    kafka = LocalKafka(tmp_path / "kafka", port=port, controller_port=controller)
    yield kafka
    kafka.kill()  # no-op when the test stopped it already


def test_start_probe_stop_restart(broker: LocalKafka) -> None:
    broker.start()
    broker.wait_ready(timeout=90)
    assert broker.is_running()
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"

    versions = api_versions("127.0.0.1", broker.port)
    for key in (API_PRODUCE, API_FETCH, API_METADATA, API_VERSIONS):
        assert key in versions

    # A second launcher on the same data dir sees the live broker through the pid file.
    twin = LocalKafka(broker.data_dir, port=broker.port, controller_port=broker.controller_port)
    assert twin.is_running()
    with pytest.raises(KafkaAlreadyRunningError):
        twin.start()

    cluster_id = (broker.data_dir / "cluster.id").read_text().strip()
    assert len(cluster_id) == 22
    broker.stop()
    assert not broker.is_running()
    assert not broker.pid_file.exists()
    with pytest.raises(OSError):
        api_versions("127.0.0.1", broker.port, timeout=1.0)

    # Restart on the same data dir: same cluster, storage not reformatted.
    broker.start()
    broker.wait_ready(timeout=90)
    assert (broker.data_dir / "cluster.id").read_text().strip() == cluster_id
    meta = (broker.data_dir / "logs" / "meta.properties").read_text()
    assert f"cluster.id={cluster_id}" in meta
    assert API_METADATA in api_versions("127.0.0.1", broker.port)

    # Stopping through the pid file works as it would from another process.
    assert stop_from_pidfile(broker.data_dir)
    assert not twin.is_running()
    assert not stop_from_pidfile(broker.data_dir)
