"""bench_report.py - renders a ``mobile-sam-c bench`` report (the dict bench.run returns) as Markdown
for stdout and README, and as a PNG of the latency distributions (matplotlib, an optional extra)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

PYTORCH = "mobile_sam (PyTorch)"  # the name of MobileSAM's own predictor in a report's rows


def _fmt(v: Optional[float], spec: str, suffix: str = "") -> str:
    return "–" if v is None else format(v, spec) + suffix


def _bytes(n: Optional[int]) -> str:
    if n is None:
        return "–"
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def markdown(report: Dict[str, Any]) -> str:
    h = report["header"]
    lines = [
        "# mobile_sam_c bench" + (" (--quick: a check, not a measurement)" if h["quick"] else ""),
        "",
        f"- machine: {h['machine']}" + ("" if h["load_average"] is None else
                                          f" (1-minute load average {h['load_average']:g} at the end of the run)"),
        f"- CPU ISA: {h['cpu_isa']}, threads: {h['threads']}",
        f"- device: {h['device']}",
        f"- weights: {h['weights']}",
        f"- date: {h['date']}",
        f"- input: {h['image']}, {h['prompt']}",
        "",
        "| device | implementation | call | mode (as_numpy, return_low_res) | median ms | p95 ms | speedup vs legacy"
        " | vs PyTorch | transfers / frame | memory / call | n |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for r in report["rows"]:
        mode = "–" if r["mode"] is None else f"{r['mode']} ({r['as_numpy']}, {r['return_low_res']})"
        if r["status"] != "measured":
            if r["reason"] not in notes:
                notes.append(r["reason"])
            note = notes.index(r["reason"]) + 1
            lines.append(f"| {r['device']} | {r['impl']} | {r['call']} | {mode} | absent [{note}] | | | | | | |")
            continue
        lines.append(f"| {r['device']} | {r['impl']} | {r['call']} | {mode} | {_fmt(r['median_ms'], '.2f')} | "
                     f"{_fmt(r['p95_ms'], '.2f')} | {_fmt(r['speedup_vs_legacy'], '.2f', 'x')} | "
                     f"{_fmt(r['vs_pytorch'], '.2f', 'x')} | {_fmt(r['transfers_per_frame'], 'g')} | "
                     f"{_bytes(r['memory_per_call_bytes'])} | {r['n']} |")
    lines.append("")
    lines += [f"[{i + 1}] {n}" for i, n in enumerate(notes)]
    for o in report["kpi_overhead"]:
        lines.append(f"\nKPI telemetry cost ({o['device']}, {o['mode']} predict, {o['n']} calls each, interleaved): "
                     f"median {_fmt(o['without_listener_median_ms'], '.3f')} ms with nobody listening, "
                     f"{_fmt(o['with_sink_median_ms'], '.3f')} ms with a sink; the telemetry alone: "
                     f"{o['idle_check_us']:.2f} µs per call when nobody listens"
                     f"{'' if o['nobody_listening'] else ' (but someone listened: kpi logger or alerts on)'}, "
                     f"{o['event_to_sink_us']:.1f} µs to build and deliver an event.")
    lines += ["", f"Speedup vs legacy: our legacy predict's median / the row's (same device). vs PyTorch: "
                  f"MobileSAM's median for the same call / the row's. Memory: {h['memory_method']}. "
                  f"Transfers: {h['transfers_method']}."]
    return "\n".join(lines) + "\n"


def plot(report: Dict[str, Any], path: Path) -> None:
    """Latency distributions per measured row (box plots), predict and set_image side by side."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("mobile-sam-c bench: --plot needs matplotlib (pip install 'mobile_sam_c[plot]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in report["rows"] if r["status"] == "measured" and r["samples_ms"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 1]})
    for ax, call in zip(axes, ("predict", "set_image")):
        rs = [r for r in measured if r["call"] == call]
        if rs:
            ax.boxplot([r["samples_ms"] for r in rs], vert=True, showfliers=True)
            ax.set_xticks(range(1, len(rs) + 1))
            ax.set_xticklabels([f"{r['device']}\n{'PyTorch' if r['impl'] == PYTORCH else 'ours'}\n{r['mode'] or ''}"
                                for r in rs], fontsize=7)
        ax.set_ylabel("latency per call (ms)")
        ax.set_title(call)
    h = report["header"]
    threads = f"{h['threads']} thread{'s' if h['threads'] != 1 else ''}"
    fig.suptitle(f"mobile_sam_c bench, {h['date']}: {h['cpu_isa']}, {threads}, weights {h['weights'][:40]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
