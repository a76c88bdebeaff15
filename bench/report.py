"""A run's results as JSON, a Markdown summary (one row per scenario with its ratios to
the raw echo and to the minimal loop measured in the same run) and matplotlib plots."""

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

GOAL_VS_MINIMAL = 0.8
GOAL_VS_ECHO = 0.25
GOAL_EVENTS_PER_S = 1000


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every scenario with events/s and its ratios (to the batched echo; to the minimal
    loop on the same database)."""
    base = results.get("baseline", {})
    echo = base.get("echo", {}).get("events_per_s") or 0
    minimal = {
        m["database"]: m["events_per_s"]
        for m in results.get("minimal", [])
        if m["scenario"] == "minimal-loop:purchasing"
    }
    out = []
    for name, r in base.items():
        out.append({"scenario": f"baseline:{name}", "database": "-", **_rates(r, echo, None)})
    for r in results.get("minimal", []):
        ref = {"events_per_s": minimal.get(r["database"])}
        out.append({"scenario": r["scenario"], "database": r["database"], **_rates(r, echo, ref)})
    for r in results.get("services", []):
        ref = {"events_per_s": minimal.get(r["database"])}
        out.append({"scenario": r["scenario"], "database": r["database"], **_rates(r, echo, ref)})
    return out


def _rates(r: dict[str, Any], echo: float, minimal: dict[str, Any] | None) -> dict[str, Any]:
    eps = r.get("events_per_s") or 0.0
    ref = (minimal or {}).get("events_per_s")
    return {
        "events_per_s": eps,
        "vs_echo": float(f"{eps / echo:.3g}") if echo else None,
        "vs_minimal": float(f"{eps / ref:.3g}") if ref else None,
        "ok": r.get("ok", True),
    }


def write(results: dict[str, Any], out_dir: Path, stamp: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    results["rows"] = rows(results)
    paths = {
        "json": out_dir / f"{stamp}.json",
        "markdown": out_dir / "latest.md",
        "throughput_png": out_dir / f"{stamp}-throughput.png",
        "lag_png": out_dir / f"{stamp}-lag.png",
    }
    paths["json"].write_text(json.dumps(results, indent=2, default=str))
    plot_throughput(results["rows"], paths["throughput_png"])
    plot_lag(results.get("services", []), paths["lag_png"])
    paths["markdown"].write_text(markdown(results, paths))
    return paths


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.2g}x"  # small ratios keep two digits


def _rounds(results: dict[str, Any]) -> str:
    rounds = results.get("baseline", {}).get("echo", {}).get("rounds") or []
    if len(rounds) < 2:
        return ""
    return f": the median of {len(rounds)} rounds, " + ", ".join(f"{r:,.0f}" for r in rounds) + "/s"


def _times_loop(results: dict[str, Any], row: dict[str, Any]) -> str:
    loop = results.get("baseline", {}).get("faststream_loop", {}).get("events_per_s")
    return f" ({row['events_per_s'] / loop:.1f}x FastStream's loop)" if loop else ""


def _ceiling(results: dict[str, Any], row: dict[str, Any]) -> str:
    """What the machine spent an event, and the rate that would be if every core were
    busy with nothing else: a service whose ceiling is under the echo goal cannot reach
    it on this machine without making its events cheaper, whatever it overlaps. Beside
    it, the bound of the service's own process: one event loop, so one core at most
    (the tighter of the two where the process, not the machine, is what is full)."""
    service: dict[str, Any] = next(
        (
            s
            for s in results.get("services", [])
            if s["scenario"] == row["scenario"] and s["database"] == row["database"]
        ),
        {},
    )
    used = service.get("machine_cpu_us_per_event")
    echo = results.get("baseline", {}).get("echo", {}).get("events_per_s")
    cpus = results["meta"].get("cpus")
    if not (used and echo and cpus):
        return ""
    ceiling = cpus * 1e6 / used
    own = service.get("process_cpu_us_per_event")
    of_which = f" ({own:.0f} in the service's process)" if own else ""
    alone = (
        f", and its process on its one core at most {1e6 / own:,.0f}/s "
        f"({_fmt(1e6 / own / echo)} the echo)"
        if own
        else ""
    )
    return (
        f"; the machine spent {used:.0f} µs of CPU an event{of_which}, so {cpus} busy cores "
        f"would make at most {ceiling:,.0f}/s ({_fmt(ceiling / echo)} the echo){alone}"
    )


def round_trips(r: dict[str, Any]) -> str:
    """One service's round trips per 1,000 events: with batches of a few hundred most are
    well under one per event, which a per-event figure rounded to 0.01 showed as 0."""
    per = {k: 1000 * v for k, v in r["per_event"].items()}
    statements = sum(v for k, v in per.items() if "(" not in k)
    top = ", ".join(f"{k} {v:.3g}" for k, v in list(per.items())[:12])
    return f"- {r['scenario']} ({r['database']}): {statements:.3g} statements; {top}"


def markdown(results: dict[str, Any], paths: dict[str, Path]) -> str:
    meta = results["meta"]
    lines = [
        f"# Benchmark {meta['stamp']}",
        "",
        f"N = {meta['n']} events per scenario, ~{meta.get('message_bytes', '?')} bytes each; "
        f"broker `{meta['broker']}`; {meta['cpus']} CPUs, load average "
        f"{meta['load_before']} before / {meta['load_after']} after; event loop "
        f"{meta.get('event_loop', 'asyncio')} (the harness's and the services').",
        "",
        "**Figures are indicative**: the machine is shared with other engineers running tests "
        "and the broker is shared too; compare ratios within one run, not absolute figures "
        "across runs.",
        "",
        "| scenario | events/s | ratio to baseline echo | ratio to minimal loop | database |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results["rows"]:
        flag = "" if r["ok"] else " (did not finish)"
        lines.append(
            f"| {r['scenario']}{flag} | {r['events_per_s']:.0f} | {_fmt(r['vs_echo'])} "
            f"| {_fmt(r['vs_minimal'])} | {r['database']} |"
        )
    lines += [
        "",
        "- *baseline:echo* consumes from A, publishes each fetched batch to B, awaits the acks "
        f"and commits (the floor{_rounds(results)}); *echo_per_record* awaits the ack and "
        "commits per record.",
        "- *faststream_loop* is FastStream's own Kafka benchmark, the figure issue 10 gives "
        "for scale (about 2,000 events/s on one laptop core): one message looping through a "
        "subscriber that publishes it back, so one event is in flight at a time. It measures "
        "a hop's latency, where the other rows measure a backlog's throughput; it shows "
        "what the issue's scale is on this machine.",
        "- *minimal-loop* is a hand-written loop making purchasing's writes for "
        "`charge.need_order`: a like-for-like reference for *service:purchasing* only; for "
        "the other services the ratio is for scale. *minimal-loop-batched* is the same loop "
        "with one transaction per fetched batch (what batch consumption would buy).",
        "- A service is timed from its first applied event to its last effect (inbox row, "
        "or outbox row published and marked sent), with the events published beforehand.",
        "",
        f"Goals (issue 10): ≥ {GOAL_VS_MINIMAL}x the minimal loop, ≥ {GOAL_VS_ECHO}x the "
        f"echo, ≥ {GOAL_EVENTS_PER_S} events/s per service on PostgreSQL.",
        "",
    ]
    for r in results["rows"]:
        if r["scenario"].startswith("service:") and r["database"] == "postgresql":
            checks = [
                ("minimal", (r["vs_minimal"] or 0) >= GOAL_VS_MINIMAL),
                ("echo", (r["vs_echo"] or 0) >= GOAL_VS_ECHO),
                ("1000/s", r["events_per_s"] >= GOAL_EVENTS_PER_S),
            ]
            marks = ", ".join(f"{name} {'met' if ok else 'NOT met'}" for name, ok in checks)
            lines.append(
                f"- {r['scenario']}: {marks}{_times_loop(results, r)}{_ceiling(results, r)}"
            )
    counted = [r for r in results.get("services", []) if r.get("per_event")]
    if counted:
        lines += [
            "",
            "Round trips per 1,000 applied events (database statements, commits, Kafka "
            "offset commits; consumer, relay and parking lot together):",
            "",
        ]
    lines += [round_trips(r) for r in counted]
    if results.get("profile"):
        lines += ["", f"Profile: `{results['profile']}` (pyinstrument)."]
    lines += [
        "",
        f"![throughput]({paths['throughput_png'].name})",
        "",
        f"![lag]({paths['lag_png'].name})",
        "",
        f"Raw figures: [{paths['json'].name}]({paths['json'].name})",
        "",
    ]
    return "\n".join(lines)


COLORS = {"-": "#7f7f7f", "sqlite": "#1f77b4", "postgresql": "#d62728"}


def plot_throughput(rows: list[dict[str, Any]], path: Path) -> None:
    labels = [f"{r['scenario']} ({r['database']})" for r in rows]
    values = [r["events_per_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    bars = ax.barh(labels, values, color=[COLORS.get(r["database"], "#2ca02c") for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("events/s (log scale)")
    ax.set_title("Throughput per scenario (grey: raw Kafka, blue: SQLite, red: PostgreSQL)")
    for bar, v in zip(bars, values, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:.0f}", va="center")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lag(services: list[dict[str, Any]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 5))
    for r in services:
        series = r.get("lag_series") or []
        if series:
            style = "-" if r["database"] == "postgresql" else "--"
            ax.plot(
                [s[0] for s in series],
                [s[1] for s in series],
                style,
                label=f"{r['service']} ({r['database']})",
            )
    ax.set_xlabel("seconds since the service started consuming (group join included)")
    ax.set_ylabel("events not applied yet")
    ax.set_title(
        "Consumer lag over time (a backlog of N events, published before consuming starts)"
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
