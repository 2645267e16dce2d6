"""RobustnessReport: JSON for machines, Markdown/HTML with PNG plots and written findings for people."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .aggregate import curve, summarize

__all__ = ["RobustnessReport"]

Row = dict[str, Any]


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{nd}f}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


class RobustnessReport:
    """Collects sweep rows and renders them.

    Args:
        rows: Rows from :mod:`robustaug.evaluate.sweeps` (any mix of kinds).
        baseline: Name of the baseline model (for mCE and comparisons).
        metric: Headline classification metric.
        meta: Free-form metadata (dataset, seeds, timings, versions) stored in the JSON.
        notes: Sentences appended to the findings (e.g. honest caveats).

    Examples:
        >>> rows = [{"kind": "severity", "model": "m", "artifact": "A", "severity": s,
        ...          "metric": "accuracy", "mean": 1 - 0.1 * s, "ci_low": 0, "ci_high": 1} for s in range(6)]
        >>> rep = RobustnessReport(rows, baseline="m")
        >>> round(rep.aggregates["m"]["auc"]["A"], 2)
        0.75
    """

    def __init__(
        self,
        rows: Sequence[Row],
        *,
        baseline: str = "baseline",
        metric: str = "accuracy",
        meta: dict[str, Any] | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        self.rows = list(rows)
        self.baseline = baseline
        self.metric = metric
        self.meta = dict(meta or {})
        self.notes = list(notes)
        self.models = []
        for r in self.rows:
            m = r.get("model")
            if r.get("kind") == "severity" and m not in self.models:
                self.models.append(m)
        self.aggregates = summarize(self.rows, self.models, baseline, metric=metric) if self.models else {}

    # ------------------------------------------------------------------ selections
    def of(self, kind: str) -> list[Row]:
        """Rows of one kind (``severity``, ``adversarial``, ``worst_case``, ``label_noise``, ``detection``)."""
        return [r for r in self.rows if r.get("kind") == kind]

    def artifacts(self) -> list[str]:
        out: list[str] = []
        for r in self.of("severity"):
            if r["artifact"] not in out:
                out.append(r["artifact"])
        return out

    # ------------------------------------------------------------------ findings
    def findings(self) -> list[str]:
        """Short statements generated from the numbers."""
        out: list[str] = []
        base = self.aggregates.get(self.baseline)
        if base:
            aucs = sorted(base["auc"].items(), key=lambda kv: kv[1])
            worst = ", ".join(f"{a} (AUC {v:.2f})" for a, v in aucs[:3])
            out.append(
                f"Baseline clean {self.metric} is {base['clean']:.3f}; under artifacts (severity 1-5, "
                f"mean over all) it is {base['mean_corrupted']:.3f}. The artifacts that hurt most are {worst}."
            )
            fails = {a: s for a, s in base["failure_point"].items() if s is not None}
            if fails:
                fp = ", ".join(f"{a} at severity {s}" for a, s in sorted(fails.items(), key=lambda kv: kv[1]))
                out.append(
                    f"Failure points (first severity with {self.metric} below "
                    f"{base['failure_threshold']:.2f}): {fp}."
                )
            else:
                out.append(f"No artifact pushed the baseline below {base['failure_threshold']:.2f}.")
            falling = 0
            for a in self.artifacts():
                c = curve(self.rows, self.baseline, a, self.metric)
                if c and 0 in c and 5 in c and c[5] < c[0] - 0.005:
                    falling += 1
            out.append(
                f"{self.metric.capitalize()} falls from severity 0 to 5 for {falling} of "
                f"{len(self.artifacts())} artifacts."
            )
            for m, agg in self.aggregates.items():
                if m == self.baseline:
                    continue
                d = agg["mean_corrupted"] - base["mean_corrupted"]
                verb = "improves" if d > 0 else "does not improve"
                out.append(
                    f"{m} {verb} the mean {self.metric} under artifacts over the baseline "
                    f"({agg['mean_corrupted']:.3f} vs {base['mean_corrupted']:.3f}, mCE {agg['mCE']:.3f})."
                )
        adv = self.of("adversarial")
        if adv:
            eps_max = max(r["eps"] for r in adv)
            at = {r["model"]: r["mean"] for r in adv if r["eps"] == eps_max}
            if at:
                s = ", ".join(f"{m} {v:.3f}" for m, v in at.items())
                out.append(f"{self.metric.capitalize()} under {adv[0]['attack'].upper()} at eps={eps_max:g}: {s}.")
        wc = self.of("worst_case")
        if wc:
            for (m, a, s) in sorted({(r["model"], r["artifact"], r["severity"]) for r in wc}):
                cases = {r["case"]: r["mean"] for r in wc if (r["model"], r["artifact"], r["severity"]) == (m, a, s)}
                out.append(
                    f"{m}, {a} severity {s}: random {cases.get('average', float('nan')):.3f}, "
                    f"worst case over the same parameters {cases.get('worst_case', float('nan')):.3f}, "
                    f"L-inf attack of matched size {cases.get('linf_matched', float('nan')):.3f}."
                )
        ln = self.of("label_noise")
        if ln:
            by: dict[tuple[str, float, str], list[float]] = {}
            for r in ln:
                by.setdefault((r["noise"], r["rate"], r["loss"]), []).append(r["mean"])
            for (noise, rate) in sorted({(k[0], k[1]) for k in by}):
                if rate == 0:
                    continue
                accs = {k[2]: float(np.mean(v)) for k, v in by.items() if (k[0], k[1]) == (noise, rate)}
                best = max(accs, key=accs.get)  # type: ignore[arg-type]
                ce = accs.get("ce")
                if ce is not None:
                    verdict = (
                        f"{best} is best ({accs[best]:.3f} vs CE {ce:.3f})"
                        if best != "ce"
                        else f"no robust loss beat CE ({ce:.3f})"
                    )
                    amount = f"{rate:.0%}" if rate < 1 else f"{rate:g} px"
                    out.append(f"Under {noise} label noise at {amount}, {verdict}.")
        det = self.of("detection")
        if det:
            p = float(np.mean([r["precision"] for r in det]))
            r_ = float(np.mean([r["recall"] for r in det]))
            out.append(f"Label-issue detection: precision {p:.3f}, recall {r_:.3f} (mean over settings).")
        out.extend(self.notes)
        return out

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "baseline": self.baseline,
            "metric": self.metric,
            "models": self.models,
            "severity": self.of("severity"),
            "adversarial": self.of("adversarial"),
            "worst_case": self.of("worst_case"),
            "label_noise": self.of("label_noise"),
            "detection": self.of("detection"),
            "aggregates": self.aggregates,
            "findings": self.findings(),
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text (NaN written as null); also written to ``path`` if given."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
                return None
            if isinstance(v, dict):
                return {str(k): clean(w) for k, w in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(w) for w in v]
            return v

        text = json.dumps(clean(self.to_dict()), indent=2)
        if path is not None:
            Path(path).write_text(text)
        return text

    def _severity_table(self, model: str) -> str:
        arts = self.artifacts()
        sev = sorted({r["severity"] for r in self.of("severity")})
        rows = []
        for a in arts:
            c = {r["severity"]: r for r in self.of("severity")
                 if r["model"] == model and r["artifact"] == a and r["metric"] == self.metric}
            rows.append([a, *[f"{c[s]['mean']:.3f} [{c[s]['ci_low']:.2f}, {c[s]['ci_high']:.2f}]"
                              if s in c else "—" for s in sev]])
        return _table(["artifact", *[f"sev {s}" for s in sev]], rows)

    def to_markdown(self, path: str | Path | None = None, images: Sequence[str] = ()) -> str:
        """A Markdown report; ``images`` are relative PNG paths embedded after the tables."""
        md = ["# robustaug robustness report", ""]
        if self.meta:
            md += ["## Setup", "", *[f"- **{k}**: {v}" for k, v in self.meta.items()], ""]
        md += ["## Findings", "", *[f"- {f}" for f in self.findings()], ""]
        if self.aggregates:
            md += ["## Summary", ""]
            md.append(_table(
                ["model", f"clean {self.metric}", "mean under artifacts", "relative robustness", "mCE",
                 "relative mCE", "worst artifact"],
                [[m, a["clean"], a["mean_corrupted"], a["relative_robustness"], a["mCE"], a["relative_mCE"],
                  a["worst_artifact"]] for m, a in self.aggregates.items()],
            ))
            md.append("")
            for m in self.models:
                md += [f"## Severity sweep: {m} ({self.metric}, mean [95 % CI])", "", self._severity_table(m), ""]
        adv = self.of("adversarial")
        if adv:
            md += ["## Adversarial sweep", "", _table(
                ["model", "attack", "norm", "eps", "accuracy", "95 % CI"],
                [[r["model"], r["attack"], r["norm"], r["eps"], r["mean"], f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"]
                 for r in adv]), ""]
        wc = self.of("worst_case")
        if wc:
            md += ["## Average case versus worst case", "", _table(
                ["model", "artifact", "severity", "case", "accuracy", "L-inf eps (matched)"],
                [[r["model"], r["artifact"], r["severity"], r["case"], r["mean"], r.get("eps_linf")] for r in wc]), ""]
        ln = self.of("label_noise")
        if ln:
            md += ["## Label-noise sweep (clean test accuracy)", "", _table(
                ["noise", "rate", "seed", "loss", "accuracy"],
                [[r["noise"], r["rate"], r["seed"], r["loss"], r["mean"]] for r in ln]), ""]
        det = self.of("detection")
        if det:
            md += ["## Label-issue detection", "", _table(
                ["noise", "rate", "seed", "precision", "recall", "flagged", "flipped"],
                [[r["noise"], r["rate"], r["seed"], r["precision"], r["recall"], r["flagged"], r["flipped"]]
                 for r in det]), ""]
        for im in images:
            md += [f"![{Path(im).stem}]({im})", ""]
        text = "\n".join(md)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_html(self, path: str | Path | None = None, images: Sequence[str] = ()) -> str:
        """A self-contained HTML page (tables from the Markdown, images linked)."""
        body = []
        in_table = False
        for line in self.to_markdown(images=()).splitlines():
            if line.startswith("|"):
                cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
                if set(line.replace("|", "").strip()) <= {"-"}:
                    continue
                if not in_table:
                    body.append("<table>")
                    in_table = True
                    body.append("<tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>")
                else:
                    body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
                continue
            if in_table:
                body.append("</table>")
                in_table = False
            if line.startswith("# "):
                body.append(f"<h1>{html.escape(line[2:])}</h1>")
            elif line.startswith("## "):
                body.append(f"<h2>{html.escape(line[3:])}</h2>")
            elif line.startswith("- "):
                body.append(f"<li>{html.escape(line[2:])}</li>")
            elif line.strip():
                body.append(f"<p>{html.escape(line)}</p>")
        if in_table:
            body.append("</table>")
        for im in images:
            body.append(f'<figure><img src="{html.escape(im)}" style="max-width:100%"><figcaption>'
                        f"{html.escape(Path(im).stem)}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
                 "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}")
        text = (f"<!doctype html><html><head><meta charset='utf-8'><title>robustaug report</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
        if path is not None:
            Path(path).write_text(text)
        return text

    # ------------------------------------------------------------------ plots
    def plot(self, out_dir: str | Path) -> list[str]:
        """Write PNG plots and return their file names.

        Plots: severity curves per artifact (one panel per artifact, one line per model), a heat map
        of artifact x severity for the baseline, average-case versus worst-case bars, adversarial
        accuracy versus budget, and label-noise accuracy per loss.
        """
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("Plots need matplotlib: pip install 'robustaug[plot]'.") from e
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files: list[str] = []
        arts = self.artifacts()
        if arts:
            ncol = min(4, len(arts))
            nrow = math.ceil(len(arts) / ncol)
            fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
            for ax, a in zip(axes.flat, arts):
                for m in self.models:
                    rs = sorted((r for r in self.of("severity") if r["model"] == m and r["artifact"] == a
                                 and r["metric"] == self.metric), key=lambda r: r["severity"])
                    if not rs:
                        continue
                    s = [r["severity"] for r in rs]
                    ax.plot(s, [r["mean"] for r in rs], marker="o", ms=3, label=m)
                    ax.fill_between(s, [r["ci_low"] for r in rs], [r["ci_high"] for r in rs], alpha=0.15)
                ax.set_title(a, fontsize=9)
                ax.set_xlabel("severity", fontsize=8)
                ax.set_ylim(0, 1.02)
                ax.tick_params(labelsize=7)
            for ax in list(axes.flat)[len(arts):]:
                ax.axis("off")
            axes.flat[0].set_ylabel(self.metric, fontsize=8)
            axes.flat[0].legend(fontsize=6)
            fig.tight_layout()
            fig.savefig(out / "severity_curves.png", dpi=110)
            plt.close(fig)
            files.append("severity_curves.png")

            sev = sorted({r["severity"] for r in self.of("severity")})
            mat = np.full((len(arts), len(sev)), np.nan)
            for r in self.of("severity"):
                if r["model"] == self.baseline and r["metric"] == self.metric:
                    mat[arts.index(r["artifact"]), sev.index(r["severity"])] = r["mean"]
            fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(sev), 0.8 + 0.32 * len(arts)))
            im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(sev)), [str(s) for s in sev])
            ax.set_yticks(range(len(arts)), arts, fontsize=7)
            ax.set_xlabel("severity")
            ax.set_title(f"{self.baseline}: {self.metric}", fontsize=9)
            for i in range(len(arts)):
                for j in range(len(sev)):
                    if not np.isnan(mat[i, j]):
                        ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=6,
                                color="w" if mat[i, j] < 0.6 else "k")
            fig.colorbar(im, ax=ax)
            fig.tight_layout()
            fig.savefig(out / "heatmap.png", dpi=110)
            plt.close(fig)
            files.append("heatmap.png")

        wc = self.of("worst_case")
        if wc:
            groups = sorted({(r["model"], r["artifact"], r["severity"]) for r in wc})
            cases = ["average", "worst_case", "linf_matched"]
            fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(groups), 3))
            w = 0.8 / len(cases)
            for k, case in enumerate(cases):
                vals = [next((r["mean"] for r in wc if (r["model"], r["artifact"], r["severity"]) == g
                              and r["case"] == case), np.nan) for g in groups]
                ax.bar(np.arange(len(groups)) + k * w, vals, w, label=case)
            ax.set_xticks(np.arange(len(groups)) + w, [f"{g[0]}\n{g[1]} s{g[2]}" for g in groups], fontsize=7)
            ax.set_ylabel("accuracy")
            ax.set_ylim(0, 1)
            ax.legend(fontsize=7)
            ax.set_title("average case vs worst case", fontsize=9)
            fig.tight_layout()
            fig.savefig(out / "worst_case.png", dpi=110)
            plt.close(fig)
            files.append("worst_case.png")

        adv = self.of("adversarial")
        if adv:
            fig, ax = plt.subplots(figsize=(4, 3))
            for m in sorted({r["model"] for r in adv}):
                rs = sorted((r for r in adv if r["model"] == m), key=lambda r: r["eps"])
                ax.plot([r["eps"] for r in rs], [r["mean"] for r in rs], marker="o", label=m)
            ax.set_xlabel("eps")
            ax.set_ylabel("accuracy")
            ax.set_ylim(0, 1.02)
            ax.legend(fontsize=7)
            ax.set_title(f"{adv[0]['attack'].upper()} ({adv[0]['norm']})", fontsize=9)
            fig.tight_layout()
            fig.savefig(out / "adversarial.png", dpi=110)
            plt.close(fig)
            files.append("adversarial.png")

        ln = self.of("label_noise")
        if ln:
            noises = sorted({r["noise"] for r in ln})
            fig, axes = plt.subplots(1, len(noises), figsize=(4 * len(noises), 3), squeeze=False)
            for ax, nz in zip(axes.flat, noises):
                for loss in sorted({r["loss"] for r in ln}):
                    rates = sorted({r["rate"] for r in ln if r["noise"] == nz})
                    vals = [float(np.mean([r["mean"] for r in ln if r["noise"] == nz and r["loss"] == loss
                                           and r["rate"] == rt])) for rt in rates]
                    ax.plot(rates, vals, marker="o", label=loss)
                ax.set_title(f"{nz} label noise", fontsize=9)
                ax.set_xlabel("noise rate")
                ax.set_ylabel("clean test accuracy")
                ax.set_ylim(0, 1.02)
                ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(out / "label_noise.png", dpi=110)
            plt.close(fig)
            files.append("label_noise.png")
        return files
