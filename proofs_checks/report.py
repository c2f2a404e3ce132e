"""Console table, Markdown report and figures for a run of the claims."""
from __future__ import annotations

import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

COLUMNS = ("claim", "source", "assumptions", "instances", "worst slack", "verdict", "time")


def _fmt(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def _short(s, n):
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def table(results, width_source=28, width_assumptions=40):
    rows = [COLUMNS]
    for r in results:
        rows.append((r.claim.name, _short(r.claim.source, width_source), _short(r.claim.assumptions, width_assumptions),
                     str(r.instances), _fmt(r.worst_slack), r.verdict, f"{r.seconds:.1f}s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths))
    out = [line(rows[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in rows[1:]]
    return "\n".join(out)


def _jsonable(d):
    if d is None:
        return None
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, dict):
            v = _jsonable(v)
        out[k] = v
    return out


def write(results, outdir, args, figures=True, done=None):
    """report.md and summary.json for ``results``; ``done = (claims finished, claims planned)`` marks a partial
    report (written after every claim, figures only at the end).  Files are replaced atomically."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / ".gitignore").write_text("*\n")  # generated: never committed
    figs = {}
    for r in results:
        if figures and r.claim.figure is not None and r.records:
            try:
                figs[r.claim.name] = [Path(p).name for p in r.claim.figure(r, outdir)]
            except Exception as e:  # noqa: BLE001 - a broken figure must not hide the results
                figs[r.claim.name] = [f"(figure failed: {e})"]
    figs["_slacks"] = [_slack_figure(results, outdir)] if figures else []
    partial = done is not None and done[0] < done[1]
    md = [f"# proofs_checks report" + (f" (PARTIAL: {done[0]} of {done[1]} claims done)" if partial else ""), "",
          f"Run {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()} ({platform.processor() or platform.machine()}), "
          f"python {platform.python_version()}, numpy {np.__version__}. "
          f"Command: `python -m proofs_checks --examples {args.examples} --seed {args.seed}"
          f"{' --only ' + args.only if getattr(args, 'only', None) else ''}"
          f"{' --skip ' + args.skip if getattr(args, 'skip', None) else ''}"
          f"{' --no-controls' if getattr(args, 'no_controls', False) else ''}`.", "",
          "Slack: how far an instance is from violating the claim after its numerical tolerance (>= 0 holds). "
          "Verdicts: **holds** (no violation, every negative control flagged), **VIOLATED** (a counterexample, "
          "shrunk by hypothesis, below), **CONTROL MISSED** (a negative control was not flagged: the check lacks "
          "teeth), **informational** (constants unconfirmed: reported, never a verdict), **TIMED OUT** (the claim "
          "ran past the per-claim time limit), **ERROR** (the check crashed).", "",
          "| claim | source | instances | worst slack | verdict | controls flagged | time |",
          "|---|---|---|---|---|---|---|"]
    for r in results:
        nflag = sum(c.flagged for c in r.controls)
        md.append(f"| {r.claim.name} | {r.claim.source} | {r.instances} | {_fmt(r.worst_slack)} | {r.verdict} | "
                  f"{nflag}/{len(r.controls)} | {r.seconds:.1f}s |")
    md += ["", f"Total time {sum(r.seconds for r in results):.1f}s.", ""]
    if figs["_slacks"]:
        md += [f"![worst slacks]({figs['_slacks'][0]})", ""]
    # claims false / vacuous / needing assumptions
    md += ["## Claims that are false, vacuous or need an extra assumption as printed", ""]
    for r in results:
        for note in r.claim.notes:
            md.append(f"- **{r.claim.name}**: {note}")
    md.append("")
    for r in results:
        if r.claim.counterexamples is not None:
            for title, text in r.claim.counterexamples():
                md += [f"### {title} ({r.claim.name})", "", text, ""]
    md += ["## Claims", ""]
    for r in results:
        c = r.claim
        md += [f"### {c.name}: {c.title}", "",
               f"- **Statement**: {c.statement}", f"- **Source**: {c.source} (mark: {c.mark})",
               f"- **Assumptions**: {c.assumptions}", f"- **Under test**: {c.under_test}",
               f"- **Instances**: {r.instances}; worst slack {_fmt(r.worst_slack)}; verdict **{r.verdict}**; "
               f"{r.seconds:.1f}s"]
        if r.worst_params is not None:
            md.append(f"- Tightest instance: `{json.dumps(_jsonable(r.worst_params))}` → "
                      f"`{_short(json.dumps(_jsonable(r.worst_info), default=str), 600)}`")
        if r.counterexample is not None:
            md.append(f"- **Counterexample (shrunk)**: `{json.dumps(_jsonable(r.counterexample))}` → "
                      f"`{_short(json.dumps(_jsonable(r.counterexample_info), default=str), 800)}`")
        if r.error:
            md += ["- **Error**:", "", "```", r.error.strip(), "```"]
        for ctl in r.controls:
            state = (f"flagged after {ctl.tries} instance(s), slack {_fmt(ctl.worst_slack)}"
                     if ctl.flagged else f"NOT flagged in {ctl.tries} instances")
            md.append(f"- Negative control *{ctl.name}* ({ctl.description}): {state}"
                      + (f"; example `{json.dumps(_jsonable(ctl.example))}`" if ctl.example else "")
                      + (f"; error: {ctl.error.strip().splitlines()[-1]}" if ctl.error else ""))
        for f in figs.get(c.name, []):
            md.append(f"\n![{c.name}]({f})")
        mod = sys.modules.get(getattr(c.check, "__module__", ""), None)
        if mod is not None and mod.__doc__:
            md += ["", "<details><summary>module docstring</summary>", "", "```", mod.__doc__.strip(), "```",
                   "", "</details>"]
        md.append("")
    path = outdir / "report.md"
    _atomic_write(path, "\n".join(md))
    summary = [dict(claim=r.claim.name, source=r.claim.source, instances=r.instances, worst_slack=r.worst_slack,
                    verdict=r.verdict, seconds=r.seconds, error=r.error,
                    controls={c.name: c.flagged for c in r.controls}) for r in results]
    _atomic_write(outdir / "summary.json", json.dumps(summary, indent=1, default=str))
    return path


def _atomic_write(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _slack_figure(results, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(results) + 1.5))
    for i, r in enumerate(results):
        s = np.array([x for x in r.slacks if np.isfinite(x)])
        if s.size:
            ax.scatter(np.maximum(s, 1e-18), np.full(s.size, i) + 0.3 * (np.random.default_rng(i).random(s.size) - 0.5),
                       s=3, alpha=0.3, c="tab:red" if (s < 0).any() else "tab:blue")
    ax.set_xscale("log")
    ax.set_yticks(range(len(results)))
    ax.set_yticklabels([r.claim.name for r in results], fontsize=7)
    ax.set_xlabel("slack per instance (log scale; values <= 1e-18 drawn at 1e-18; red: a violation)")
    ax.set_title("slack of every instance, per claim")
    fig.tight_layout()
    fig.savefig(outdir / "slacks.png", dpi=110)
    plt.close(fig)
    return "slacks.png"
