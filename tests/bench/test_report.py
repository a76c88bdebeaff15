"""The per-service benchmark's Markdown (bench/report.py); the smoke test runs it whole."""

from bench.report import round_trips


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
