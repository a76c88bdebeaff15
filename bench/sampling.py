"""What the whole-stack runs sample while they run: each service process's resident memory
and CPU (from /proc), and each service group's consumer lag (committed offsets against
the end of its input topics), as time series."""

import asyncio
import contextlib
import importlib
import os
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from procure_devstack.stack import Stack

TICK_S = os.sysconf("SC_CLK_TCK")


def input_topics(service: str) -> list[str]:
    """The topics the service's consumer group subscribes to (its handlers' topics)."""
    return list(importlib.import_module(f"procure_{service}.handlers").handlers.topics)


def proc_figures(pid: int) -> tuple[float, float]:
    """(resident MB, CPU seconds so far) of one process."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / TICK_S  # utime + stime
    return rss_kb / 1024, cpu_s


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy so far, every core and process (the
    broker's, the database's, this one's): user, nice, system, irq and softirq from
    /proc/stat. Idle, I/O wait and time stolen by the hypervisor are not counted."""
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    )
    return (user + nice + system + irq + softirq) / TICK_S


def service_pids(stack: Stack) -> dict[str, int]:
    """Each service's python process (launch_stack runs `python -m procure_<name>`
    directly, no `uv run` wrapper: checked against /proc/<pid>/cmdline)."""
    pids = {}
    for name, proc in stack.procs.items():
        pid = proc.pid
        if pid is None:
            continue
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if f"procure_{name}".encode() not in argv:
            raise RuntimeError(f"pid {pid} is not {name}'s python process: {argv}")
        pids[name] = pid
    return pids


class Samplers:
    """RSS/CPU per service and lag per consumer group, one row per sample:
    `processes`: [seconds, {service: [rss MB, CPU % since the last sample]}];
    `lag`: [seconds, {service: records not committed yet}]."""

    def __init__(self, stack: Stack, started: float) -> None:
        self.stack = stack
        self.started = started
        self.pids = service_pids(stack)
        self.topics = {
            name: [f"{stack.prefix}{t}" for t in input_topics(name)] for name in self.pids
        }
        self.groups = {name: stack.group_id(name) for name in self.pids}
        self.processes: list[list[Any]] = []
        self.lag: list[list[Any]] = []
        self._cpu: dict[str, tuple[float, float]] = {}
        self._parts: dict[str, list[TopicPartition]] | None = None

    def sample_processes(self) -> None:
        now = time.time()
        row = {}
        for name, pid in self.pids.items():
            try:
                rss, cpu = proc_figures(pid)
            except OSError:  # exited
                continue
            last_t, last_cpu = self._cpu.get(name, (now, cpu))
            share = 100 * (cpu - last_cpu) / (now - last_t) if now > last_t else 0.0
            self._cpu[name] = (now, cpu)
            row[name] = [round(rss, 1), round(share, 1)]
        self.processes.append([round(now - self.started, 2), row])

    async def run(self, stop: asyncio.Event, every_s: float, lag_every_s: float) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.bootstrap)
        ends = AIOKafkaConsumer(bootstrap_servers=self.stack.bootstrap)
        await admin.start()
        await ends.start()
        try:
            last_lag = 0.0
            while not stop.is_set():
                self.sample_processes()
                if time.monotonic() - last_lag >= lag_every_s:
                    last_lag = time.monotonic()
                    await self._sample_lag(admin, ends)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(every_s):
                        await stop.wait()
            self.sample_processes()
        finally:
            await ends.stop()
            await admin.close()

    async def _partitions(self, ends: AIOKafkaConsumer) -> dict[str, list[TopicPartition]]:
        """Each group's input partitions, found once (the stack made its topics before the
        run) and assigned to `ends`. A consumer with nothing assigned refreshes the metadata
        of every topic on the broker; each sample did, so the harness's CPU grew with the
        topics a development broker collects (bench/levers.md, the measuring pitfall)."""
        if self._parts is None:
            wanted = {t for topics in self.topics.values() for t in topics}
            while any(ends.partitions_for_topic(t) is None for t in wanted):
                await ends._client.force_metadata_update()
            self._parts = {
                name: [TopicPartition(t, p) for t in topics for p in ends.partitions_for_topic(t)]
                for name, topics in self.topics.items()
            }
            ends.assign(sorted({tp for tps in self._parts.values() for tp in tps}))
        return self._parts

    async def _sample_lag(self, admin: AIOKafkaAdminClient, ends: AIOKafkaConsumer) -> None:
        parts = await self._partitions(ends)
        end = await ends.end_offsets(sorted({tp for tps in parts.values() for tp in tps}))
        row = {}
        for name, tps in parts.items():
            done = await admin.list_consumer_group_offsets(self.groups[name], partitions=tps)
            row[name] = sum(  # max(0, …): a commit can land between the two reads
                max(0, end[tp] - (done[tp].offset if tp in done and done[tp].offset >= 0 else 0))
                for tp in tps
            )
        self.lag.append([round(time.time() - self.started, 2), row])
