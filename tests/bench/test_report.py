"""The per-service benchmark's Markdown (bench/report.py); the smoke test runs it whole."""

from pathlib import Path

from bench.report import markdown, round_trips, rows


def test_round_trips_under_one_per_event_are_shown_per_thousand_events() -> None:
    # 2,000 events in batches of ~200: ten commits, ten inbox claims, one settings read
    row = {
        "scenario": "service:purchasing",
        "database": "postgresql",
        "per_event": {"INSERT inbox": 0.005, "COMMIT (database)": 0.005, "SELECT x": 0.0005},
    }
    line = round_trips(row)
    assert line == (
        "- service:purchasing (postgresql): 5.5 statements; "
        "INSERT inbox 5, COMMIT (database) 5, SELECT x 0.5"
    )


def test_each_service_is_also_given_as_a_multiple_of_faststreams_own_loop() -> None:
    # Issue 10 gives FastStream's echo benchmark for scale: the summary says where each
    # service stands against it as measured in the same run, beside the goal's ratios.
    results = {
        "meta": {
            "stamp": "S",
            "n": 10,
            "broker": "b",
            "cpus": 2,
            "load_before": 0,
            "load_after": 0,
        },
        "baseline": {
            "echo": {"events_per_s": 40000.0},
            "faststream_loop": {"events_per_s": 1000.0},
        },
        "minimal": [
            {"scenario": "minimal-loop:purchasing", "database": "postgresql", "events_per_s": 400.0}
        ],
        "services": [
            {"scenario": "service:quotes", "database": "postgresql", "events_per_s": 4500.0}
        ],
    }
    results["rows"] = rows(results)
    paths = {k: Path(f"x-{k}") for k in ("json", "throughput_png", "lag_png")}
    text = markdown(results, paths)
    assert (
        "- service:quotes: minimal met, echo NOT met, 1000/s met (4.5x FastStream's loop)" in text
    )
    assert "| baseline:faststream_loop | 1000 | 0.025x | - | - |" in text


def test_each_service_says_what_the_machine_spent_an_event_and_what_that_allows() -> None:
    # 2 cores at 200 µs of machine CPU an event allow 10,000/s at most: 0.25x an echo of
    # 40,000/s, the goal's bound, whatever the service overlaps. Its one process at 120 µs
    # an event allows 8,333/s: the tighter bound here.
    results = {
        "meta": {"stamp": "S", "n": 10, "broker": "b", "cpus": 2},
        "baseline": {"echo": {"events_per_s": 40000.0}},
        "services": [
            {
                "scenario": "service:quotes",
                "database": "postgresql",
                "events_per_s": 4500.0,
                "machine_cpu_us_per_event": 200.0,
                "process_cpu_us_per_event": 120.0,
            },
            {"scenario": "service:quotes", "database": "sqlite", "events_per_s": 5000.0},
        ],
    }
    results["meta"] |= {"load_before": 0, "load_after": 0}
    results["rows"] = rows(results)
    paths = {k: Path(f"x-{k}") for k in ("json", "throughput_png", "lag_png")}
    text = markdown(results, paths)
    assert (
        "- service:quotes: minimal NOT met, echo NOT met, 1000/s met; the machine spent "
        "200 µs of CPU an event (120 in the service's process), so 2 busy cores would make at most 10,000/s "
        "(0.25x the echo), and its process on its one core at most 8,333/s (0.21x the echo)" in text
    )
