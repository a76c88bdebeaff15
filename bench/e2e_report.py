"""The whole-stack runs' results: JSON, a Markdown summary judged against the issue's
goals (latest-e2e.md, latest-memory.md) and matplotlib plots (charges per second and
consumer lag over time, latency per stage, RSS and CPU per service over time)."""

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.e2e import GOAL_P99_MS, GOAL_RATE, STAGES, goals
from bench.memory import FLAT_MB

INDICATIVE = (
    "**Figures are indicative**: a 2-core machine shared with other engineers' test runs, "
    "and the harness (producer, people, consumer, samplers, SMTP sink) runs on it too."
)


def write(results: dict[str, Any], out_dir: Path, stamp: str) -> dict[str, Path]:
    kind = results["scenario"]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{stamp}-{kind}.json",
        "markdown": out_dir / f"latest-{kind}.md",
        "rss_png": out_dir / f"{stamp}-{kind}-rss.png",
    }
    plot_processes(results["series"]["processes"], paths["rss_png"])
    if kind == "e2e":
        results["goals"] = goals(results)
        paths["flow_png"] = out_dir / f"{stamp}-e2e-flow.png"
        paths["latency_png"] = out_dir / f"{stamp}-e2e-latency.png"
        plot_flow(results["series"], paths["flow_png"])
        plot_latency(results["latencies_ms"], paths["latency_png"])
        text = e2e_markdown(results, paths)
    else:
        text = memory_markdown(results, paths)
    paths["json"].write_text(json.dumps(results, indent=2, default=str))
    paths["markdown"].write_text(text)
    return paths


def _header(results: dict[str, Any], title: str) -> list[str]:
    meta = results["meta"]
    return [
        f"# {title} {meta['stamp']}",
        "",
        f"Database {meta['database']}; broker `{meta['broker']}`; {meta['cpus']} CPUs, load "
        f"average {meta['load_before']} before / {meta['load_after']} after; commit "
        f"{meta['commit']}; event loop {meta.get('event_loop', 'asyncio')}. The harness process used {meta['harness_cpu_s']} s of CPU "
        f"(the whole command; the measured part took {results['seconds']} s).",
        "",
        INDICATIVE,
        "",
    ]


def _stage_table(stages: dict[str, Any], verdicts: dict[str, str]) -> list[str]:
    lines = [
        "| stage | charges | p50 ms | p95 ms | p99 ms | max ms | goal |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, s in stages.items():
        if not s.get("count"):
            lines.append(f"| {name} | 0 | - | - | - | - | {verdicts.get(name, '')} |")
            continue
        lines.append(
            f"| {name} | {s['count']} | {s['p50_ms']:.0f} | {s['p95_ms']:.0f} | "
            f"{s['p99_ms']:.0f} | {s['max_ms']:.0f} | {verdicts.get(name, '')} |"
        )
    return lines


def _service_table(results: dict[str, Any]) -> list[str]:
    lag, procs = results["series"]["lag"], results["series"]["processes"]
    names = sorted({n for _, row in procs for n in row})
    lines = [
        "| service | peak lag (records) | RSS first / last / max MB | mean CPU % |",
        "|---|---:|---:|---:|",
    ]
    for n in names:
        rss = [row[n][0] for _, row in procs if n in row]
        cpu = [row[n][1] for _, row in procs[1:] if n in row]
        peak = max((row.get(n, 0) for _, row in lag), default=0)
        lines.append(
            f"| {n} | {peak} | {rss[0]:.0f} / {rss[-1]:.0f} / {max(rss):.0f} "
            f"| {sum(cpu) / max(len(cpu), 1):.0f} |"
        )
    return lines


def _dead(r: dict[str, Any]) -> str:
    dead = {n: c for n, c in r["dead_letters"].items() if c}
    return ", ".join(f"{n} {c}" for n, c in dead.items()) if dead else "none"


def _handler_lines(r: dict[str, Any]) -> list[str]:
    """Where each consumer's time went: seconds inside its handlers' transactions, and
    the event types costing most (events x mean ms)."""
    lines = [
        "Time in handlers (each service's `/metrics`, `procure_handler_seconds`; one "
        "consumer per service applies its events one at a time):",
        "",
    ]
    for name, per in r["handlers"].items():
        busy = sum(total for _, total in per.values())
        top = sorted(per.items(), key=lambda kv: -kv[1][1])[:4]
        costs = ", ".join(
            f"{kind} {count:.0f} x {1000 * total / max(count, 1):.0f} ms"
            for kind, (count, total) in top
        )
        lines.append(f"- {name}: {busy:.1f} s in {r['seconds']} s; {costs}")
    if mails := r.get("mails"):  # runs from before the notifier measured it have none
        lines += [
            "",
            f"Mails (the notifier's `procure_mail_delay_seconds`, queued → accepted by the "
            f"SMTP server): {mails['mails']} sent, mean {mails['mean_ms']} ms, median ≤ "
            f"{mails['p50_le_ms']} ms, 99th percentile ≤ {mails['p99_le_ms']} ms (bucket bounds).",
        ]
    return lines


def _trailer(r: dict[str, Any], paths: dict[str, Path], *images: tuple[str, str]) -> list[str]:
    """What every summary ends with: the services, their handlers, the plots, the JSON."""
    lines = [*_service_table(r), "", *_handler_lines(r), ""]
    for alt, key in images:
        lines += [f"![{alt}]({paths[key].name})", ""]
    return [*lines, f"Raw figures: [{paths['json'].name}]({paths['json'].name})", ""]


def e2e_markdown(r: dict[str, Any], paths: dict[str, Path]) -> str:
    t, offer = r["throughput"], r["offer"]
    lines = _header(r, "End-to-end benchmark")
    lines += [
        f"{r['charges']} charges offered as `opportunity.won` at {offer['rate']:g}/s, open "
        f"loop (achieved {t.get('offered_per_s', '-')}/s; the offers fell at most "
        f"{offer['max_slip_s']} s behind schedule), after {r['warmup']} warm-up charges. "
        f"The harness ordered, received and delivered in bulk every {r['meta']['cadence']} s.",
        "",
        f"**{'Completed' if r['ok'] else 'Did NOT complete'}**: {r['verified_in_quotes']} of "
        f"{r['charges']} charges Delivered/Shipped in quotes after {r['seconds']} s"
        + (f"; errors: {'; '.join(r['errors'])}" if r["errors"] else "")
        + f". Dead letters: {_dead(r)}. Charges past each point: "
        + ", ".join(f"{k} {v}" for k, v in r["counts"].items())
        + ".",
        "",
        f"Throughput: offered {t.get('offered_per_s', '-')}/s, through routing "
        f"{t.get('routed_per_s', '-')}/s, through the whole flow {t.get('whole_flow_per_s', '-')}/s.",
        "",
        *_stage_table(r["stages"], r["goals"]),
        "",
        f"Goal (issue 10): the routing stages keep p99 < {GOAL_P99_MS:.0f} ms at "
        f"{GOAL_RATE:.0f} charges/s offered. "
        + "; ".join(f"{name}: **{verdict}**" for name, verdict in r["goals"].items())
        + ".",
        "",
        "- won→need_order, won→queue: `opportunity.won` produced → `charge.need_order` / "
        "`charge.forwarded` published (Kafka record timestamps).",
        "- receipt→ready: the receipt POST returned → shipping applied `units.received` "
        "(Ready tab); (quotes): quotes applied it (the units' status). Their inbox rows.",
        "- delivery→delivered: the delivery POST returned → `salesorder.ready_to_fulfill`.",
        "- won→delivered includes the people's cadence (they act in bulk).",
        "- The charges of one receipt or one delivery share its time: those stages have as "
        "many distinct values as there were receipts or deliveries.",
        "",
        *_trailer(
            r,
            paths,
            ("charges per second and lag", "flow_png"),
            ("latency per stage", "latency_png"),
            ("RSS and CPU", "rss_png"),
        ),
    ]
    return "\n".join(lines)


def memory_markdown(r: dict[str, Any], paths: dict[str, Path]) -> str:
    lines = _header(r, "Memory over time")
    flat = all(s["flat"] for s in r["rss"].values())
    lines += [
        f"{r['minutes']} minutes of the whole flow at {r['offer']['rate']:g} charges/s "
        f"offered: {r['charges']} charges, {r['delivered']} delivered by the end"
        + (f"; errors: {'; '.join(r['errors'])}" if r["errors"] else "")
        + f". Dead letters: {_dead(r)}. RSS sampled every "
        f"{r['meta']['every']} s; the slope is a line fitted over the second half.",
        "",
        "| service | start MB | half-way MB | end MB | max MB | slope MB/min (2nd half) "
        "| growth MB (2nd half) | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, s in r["rss"].items():
        lines.append(
            f"| {name} | {s['start_mb']:.0f} | {s['half_mb']:.0f} | {s['end_mb']:.0f} | "
            f"{s['max_mb']:.0f} | {s['slope_mb_per_min']:+.2f} | "
            f"{s['second_half_growth_mb']:+.1f} | {'flat' if s['flat'] else 'GROWING'} |"
        )
    backlog = {n: v for n, v in (r["series"]["lag"] or [[0, {}]])[-1][1].items() if v > 100}
    if backlog:
        lines += [
            "",
            "The stack did **not keep up** with the offered load (records not committed at the "
            f"end: {', '.join(f'{n} {v}' for n, v in backlog.items())}): growth there may be "
            "the backlog in flight rather than a leak. Run again with a lower `--rate`.",
        ]
    judged = r["minutes"] >= 10
    verdict = ("met" if flat else "NOT met") if judged else "not judged (shorter than 10 min)"
    lines += [
        "",
        f"Goal (issue 10): memory per service stays flat over a 10-minute run (flat: under "
        f"{FLAT_MB:g} MB of fitted growth over the second half): **{verdict}**.",
        "",
        *_trailer(r, paths, ("RSS and CPU", "rss_png")),
    ]
    return "\n".join(lines)


# --- plots -------------------------------------------------------------------------------


def plot_flow(series: dict[str, Any], path: Path) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    labels = {
        "won": "offered (opportunity.won)",
        "queue": "on the queue (charge.forwarded)",
        "receipt": "received (receipt POST)",
        "ready": "Ready (shipping applied)",
        "delivered": "Delivered (quotes)",
    }
    for point, counts in series["per_second"].items():
        x = range(len(counts) + 1)  # each count holds for its whole second
        top.plot(x, [*counts, 0], label=labels[point], drawstyle="steps-post")
    top.set_ylabel("charges per second")
    top.set_title("Charges through each point, per second")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    lag = series["lag"]
    for name in sorted({n for _, row in lag for n in row}):
        bottom.plot([t for t, _ in lag], [row.get(name, 0) for _, row in lag], label=name)
    bottom.set_xlabel("seconds since the first offer (warm-up included)")
    bottom.set_ylabel("records not committed")
    bottom.set_title("Consumer lag per service group")
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(latencies: dict[str, list[float]], path: Path) -> None:
    names = [name for name, _, _ in STAGES if latencies.get(name)]
    fig, ax = plt.subplots(figsize=(10, 5))
    if names:
        ax.boxplot([latencies[n] for n in names], whis=(1, 99), showfliers=True, sym=".")
        ax.set_xticks(range(1, len(names) + 1), names, rotation=15)
    ax.set_yscale("log")
    ax.axhline(GOAL_P99_MS, color="#d62728", linestyle="--", label=f"{GOAL_P99_MS:.0f} ms goal")
    ax.set_ylabel("ms (log scale)")
    ax.set_title("Latency per stage (box: p25-p75, line: p50, whiskers: p1-p99)")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_processes(samples: list[list[Any]], path: Path) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name in sorted({n for _, row in samples for n in row}):
        points = [(t, row[name]) for t, row in samples if name in row]
        top.plot([t for t, _ in points], [v[0] for v in (p for _, p in points)], label=name)
        bottom.plot([t for t, _ in points[1:]], [p[1] for _, p in points[1:]], label=name)
    top.set_ylabel("RSS (MB)")
    top.set_title("Resident memory per service process")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_xlabel("seconds since the first offer")
    bottom.set_ylabel("CPU % (100 = one core)")
    bottom.set_title("CPU per service process")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
