"""The benchmark harness runs end to end on a tiny load: the raw-Kafka baseline, the
minimal loop and one service on SQLite, written as JSON, Markdown and plots. Timings
are never asserted (the machine is shared); only that every scenario moved its events."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


def _bench(kafka_bootstrap: str, *args: str, timeout: float) -> None:
    """`python -m bench ARGS` against the tests' broker; it must exit 0 (each command
    exits non-zero when what it measured did not all happen)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]


def test_smoke_run_measures_every_scenario_and_writes_the_reports(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    _bench(kafka_bootstrap, "run", "--smoke", "--n", "20", "--out", str(tmp_path), timeout=240)

    [report] = tmp_path.glob("*.json")
    results = json.loads(report.read_text())
    assert results["meta"]["n"] == 20
    loop = results["baseline"].pop("faststream_loop")  # FastStream's own benchmark, 1 s
    assert loop["events"] > 1 and loop["events_per_s"] > 0 and loop.get("ok", True)
    assert set(results["baseline"]) == {"produce", "consume", "echo", "echo_per_record"}
    for figures in results["baseline"].values():
        assert figures["events"] >= 20 and figures["events_per_s"] > 0
    echo = results["baseline"]["echo"]  # the floor: the median of three rounds
    assert len(echo["rounds"]) == 3 and echo["events_per_s"] == sorted(echo["rounds"])[1]
    loops = {m["scenario"]: m for m in results["minimal"]}
    assert set(loops) == {"minimal-loop:purchasing", "minimal-loop-batched:purchasing"}
    for loop in loops.values():
        assert (loop["database"], loop["events"]) == ("sqlite", 20)
        assert loop["events_per_s"] > 0
    [service] = results["services"]
    assert (service["service"], service["database"], service["ok"]) == (
        "purchasing",
        "sqlite",
        True,
    )
    assert service["events"] == 20 and service["events_per_s"] > 0
    assert service["outgoing"] == {"charge.forwarded": 20}
    assert service["published_on_output_topics"] == 20
    # The round trips were counted: one inbox claim per batch, so at most one per event.
    assert 0 < service["per_event"]["INSERT inbox"] <= 1.0
    # The machine's CPU over the window, and this process's share of it (10 ms ticks).
    assert 0 < service["process_cpu_us_per_event"] <= service["machine_cpu_us_per_event"] + 1e4 / 20
    by_name = {row["scenario"]: row for row in results["rows"]}
    assert by_name["baseline:echo"]["vs_echo"] == 1.0
    assert by_name["service:purchasing"]["vs_echo"] > 0
    assert by_name["service:purchasing"]["vs_minimal"] > 0

    summary = (tmp_path / "latest.md").read_text()
    assert (
        "| scenario | events/s | ratio to baseline echo | ratio to minimal loop | database |"
        in summary
    )
    assert "| service:purchasing | " in summary and "indicative" in summary
    assert "the median of 3 rounds" in summary
    assert "| baseline:faststream_loop | " in summary
    pngs = sorted(p.name.rsplit("-", 1)[-1] for p in tmp_path.glob("*.png"))
    assert pngs == ["lag.png", "throughput.png"]
    assert all(p.stat().st_size > 1000 for p in tmp_path.glob("*.png"))


def test_smoke_e2e_carries_every_charge_to_delivered_and_writes_the_reports(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    _bench(kafka_bootstrap, "e2e", "--smoke", "--out", str(tmp_path), timeout=240)

    [report] = tmp_path.glob("*-e2e.json")
    results = json.loads(report.read_text())
    assert (results["ok"], results["charges"], results["verified_in_quotes"]) == (True, 10, 10)
    assert results["errors"] == [] and not any(results["dead_letters"].values())
    assert set(results["counts"].values()) == {10}  # every charge passed every point
    assert set(results["stages"]) == {
        "won→need_order",
        "won→queue",
        "receipt→ready",
        "receipt→ready (quotes)",
        "delivery→delivered",
        "won→delivered",
    }
    for stage in results["stages"].values():
        assert stage["count"] == 10 and {"p50_ms", "p95_ms", "p99_ms", "max_ms"} <= set(stage)
    assert {"offered_per_s", "routed_per_s", "whole_flow_per_s"} == set(results["throughput"])
    assert set(results["goals"]) == {"won→queue", "receipt→ready", "receipt→ready (quotes)"}
    services = {"quotes", "inventory", "purchasing", "receiving", "shipping", "notifier"}
    assert set(results["series"]["lag"][-1][1]) == services
    assert set(results["series"]["processes"][-1][1]) == services
    mails = results["mails"]  # every charge mails its stakeholders as it moves
    assert mails["mails"] >= 10 and mails["mean_ms"] > 0 and mails["p99_le_ms"] is not None

    summary = (tmp_path / "latest-e2e.md").read_text()
    assert "| won→queue | 10 |" in summary and "indicative" in summary
    assert f"{mails['mails']} sent" in summary and "event loop uvloop" in summary
    pngs = sorted(p.name.rsplit("-", 1)[-1] for p in tmp_path.glob("*.png"))
    assert pngs == ["flow.png", "latency.png", "rss.png"]
    assert all(p.stat().st_size > 1000 for p in tmp_path.glob("*.png"))


def test_smoke_sweep_runs_each_rate_on_its_own_stack_and_writes_the_curve(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    _bench(kafka_bootstrap, "sweep", "--smoke", "--out", str(tmp_path), timeout=300)

    [report] = tmp_path.glob("*-sweep.json")
    sweep = json.loads(report.read_text())
    points = sweep["points"]
    assert [(p["rate"], p["charges"], p["ok"]) for p in points] == [(5, 5, True), (10, 10, True)]
    assert len({p["stamp"] for p in points}) == 2  # a fresh stack per rate
    services = {"quotes", "inventory", "purchasing", "receiving", "shipping", "notifier"}
    for p in points:
        assert set(p["stages"]) == {"won→queue", "receipt→ready", "receipt→ready (quotes)"}
        for stage in p["stages"].values():
            assert stage["count"] == p["charges"] and stage["p50_ms"] <= stage["p99_ms"]
        assert set(p["cpu_pct"]) == services and None not in p["cpu_pct"].values()
        assert sum(p["cpu_pct"].values()) > 0 and p["harness_cpu_s"] > 0

    summary = (tmp_path / "latest-sweep.md").read_text()
    assert "| 5 | " in summary and "| 10 | " in summary and "indicative" in summary
    verdict = sweep["highest_rate_within_goal"]  # whatever this machine gave, as judged
    if verdict is None:
        assert "No rate measured kept every routing stage's p99 < 250 ms" in summary
    else:
        assert f"up to **{verdict:g} charges/s**" in summary
    [png] = tmp_path.glob("*-sweep.png")
    assert png.stat().st_size > 1000 and not list(tmp_path.glob("latest-e2e.md"))


def _tool(module: str, out: Path, *args: str, timeout: float) -> tuple[str, dict]:
    """Runs `python -m bench.<module> ... --out out`; its stdout and the figures it wrote.
    Each tool exits non-zero when what it timed did not all happen."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [report] = out.glob(f"*-{module}.json")
    return done.stdout, json.loads(report.read_text())


@pytest.mark.parametrize("growing", [False, True])
def test_smoke_bulk_moves_every_charge_to_delivered_and_writes_its_figures(
    tmp_path: Path, growing: bool
) -> None:
    # It fails if any charge fell short of Delivered/Shipped (with `--growing`, if a bulk
    # event came before its deals: it would park).
    args = ("--db", "sqlite", "--groups", "2", "--lines", "5") + (("--growing",) if growing else ())
    stdout, figures = _tool("bulk", tmp_path, *args, timeout=240)
    meta = {"database": "sqlite", "groups": 2, "lines": 5, "growing": growing}
    assert figures["meta"] == {**figures["meta"], **meta}
    assert ("in turn" in stdout) is growing
    assert set(figures["quotes"]) == {"po.submitted", "units.received", "shipment.delivered"}
    for row in figures["quotes"].values():
        assert row["events"] == 2 and row["cpu_ms_median"] > 0


def test_smoke_mail_times_both_paths_and_every_mail_arrives(tmp_path: Path) -> None:
    # It fails if a mail did not arrive.
    stdout, figures = _tool("mail", tmp_path, "--n", "20", "--rounds", "1", timeout=120)
    assert figures["meta"] == {**figures["meta"], "n": 20, "rounds": 1}
    assert set(figures["sender"]) == {"send_message", "notifier"}
    assert all(len(path["rounds"]) == 1 for path in figures["sender"].values())
    assert "µs" in stdout


def test_smoke_apply_times_every_hot_path_and_applies_every_event(tmp_path: Path) -> None:
    # It fails if an event was not applied.
    args = ("--db", "sqlite", "--n", "20", "--batch", "10")
    _, figures = _tool("apply", tmp_path, *args, timeout=240)
    assert figures["meta"] == {**figures["meta"], "database": "sqlite", "n": 20, "batch": 10}
    names = {"quotes", "quotes-ledger", "purchasing", "receiving", "shipping"}
    names |= {"inventory-receipts", "inventory-deliveries", "shipping-ready", "quotes-created"}
    names |= {"notifier-receipts"}
    assert set(figures["services"]) == names
    for row in figures["services"].values():
        assert row["events"] == 20 and row["cpu_us_per_event"] > 0
        # Reported beside it; /proc/stat counts in ticks of 10 ms, longer than so short a
        # window, so its value here can be 0.
        assert row["machine_cpu_us_per_event"] >= 0
