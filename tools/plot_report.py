"""Plots for `cts report` (matplotlib, Debian's python3-matplotlib).

Usage: plot_report.py DIR
  DIR a run folder (metrics.json): for every metric matrix <name>_matrix the learner recorded
        (accuracy = class-IL and task_il_accuracy for classifiers; exact_match, bleu4, ... for
        others): plots/<name>_over_tasks.png (the paper's Fig. 5 style: the score of each task
        after every later task, and the average) and plots/<name>_matrix.png (heat map, Fig. 8).
  DIR a sweep folder (sweep.csv + sweep.json): plots/accuracy_vs_<axis>.png (final average
        accuracy, mean ± std over seeds, against the numeric grid axis, one line per value of
        the other axes: Table 1 as a plot), plots/accuracy_vs_memory_bytes.png,
        plots/average_accuracy_over_tasks.png (one line per cell, mean over seeds: the paper's
        Fig. 5 for a sweep over methods); and the run plots inside every finished run folder.
Usage: plot_report.py --compare OUT SWEEP1 SWEEP2 ...
  several sweep folders in common plots under OUT/plots/: accuracy_vs_<axis>.png (one curve per
        sweep and value of its other axes, labelled "<sweep folder>: ..."; sweeps without a
        numeric axis, e.g. the finetune / cumulative baselines, are horizontal lines) and
        accuracy_vs_memory_bytes.png (every run, one marker style per sweep).
Prints the files it wrote.
"""
import csv
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save(fig, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    print(path)


METRIC_LABELS = {"accuracy": "class-IL accuracy", "task_il_accuracy": "task-IL accuracy"}


def metric_matrices(m):
    """Every <name>_matrix of a metrics.json, the primary metric (accuracy) first."""
    names = sorted(k[: -len("_matrix")] for k in m if k.endswith("_matrix"))
    return sorted(names, key=lambda n: (n != "accuracy", n))


def run_plots(run_dir):
    """For every metric matrix R of the run: <name>_over_tasks.png (each task's score after
    every later task, and the average over the tasks seen) and <name>_matrix.png (heat map)."""
    with open(os.path.join(run_dir, "metrics.json")) as f:
        m = json.load(f)
    for name in metric_matrices(m):
        R = m[name + "_matrix"]
        T = len(R)
        done = m.get("tasks_done", T)
        label = METRIC_LABELS.get(name, name.replace("_", " "))
        values = [v for row in R for v in row if v is not None]
        percent = all(0.0 <= v <= 1.0 for v in values)  # fractions are shown in %
        scale, unit = (100.0, " (%)") if percent else (1.0, "")
        top = 100.0 if percent else max(values + [1.0])
        fig, ax = plt.subplots(figsize=(6, 4))
        for j in range(T):
            xs = [i + 1 for i in range(j, done) if R[i][j] is not None]
            ys = [scale * R[i][j] for i in range(j, done) if R[i][j] is not None]
            if xs:
                ax.plot(xs, ys, marker="o", label=f"task {j + 1}")
        # The average over the tasks seen so far (the diagonal block; entries above it are
        # scores of tasks not trained yet, kept for FWT).
        avg = []
        for i in range(done):
            seen = [R[i][j] for j in range(i + 1) if R[i][j] is not None]
            if seen:
                avg.append(sum(seen) / len(seen))
        if avg:
            ax.plot(range(1, len(avg) + 1), [scale * a for a in avg], "k--", linewidth=2, label="average")
        ax.set_xlabel("after training task")
        ax.set_ylabel(label + unit)
        ax.set_xticks(range(1, T + 1))
        ax.set_ylim(0, top)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        ax.set_title(os.path.basename(os.path.normpath(run_dir)))
        save(fig, os.path.join(run_dir, "plots", f"{name}_over_tasks.png"))

        fig, ax = plt.subplots(figsize=(1.0 + 0.7 * T, 0.8 + 0.6 * T))
        data = [[(scale * v if v is not None else float("nan")) for v in row] for row in R]
        im = ax.imshow(data, vmin=0, vmax=top, cmap="viridis")
        for i in range(T):
            for j in range(T):
                if R[i][j] is not None:
                    text = f"{scale * R[i][j]:.0f}" if percent else f"{R[i][j]:.2f}"
                    ax.text(j, i, text, ha="center", va="center", color="w" if scale * R[i][j] < 0.6 * top else "k", fontsize=8)
        ax.set_xticks(range(T))
        ax.set_xticklabels([str(j + 1) for j in range(T)])
        ax.set_yticks(range(T))
        ax.set_yticklabels([str(i + 1) for i in range(T)])
        ax.set_xlabel("evaluated on task")
        ax.set_ylabel("after training task")
        fig.colorbar(im, ax=ax, label=label + unit)
        save(fig, os.path.join(run_dir, "plots", f"{name}_matrix.png"))


def as_float(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def sweep_rows(sweep_dir):
    """The grid axes of a sweep folder and its finished rows of sweep.csv."""
    with open(os.path.join(sweep_dir, "sweep.json")) as f:
        spec = json.load(f)
    axes = [a["key"] for a in spec.get("axes", [])]
    with open(os.path.join(sweep_dir, "sweep.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "done"]
    return axes, rows


def mean_std(values):
    mu = sum(values) / len(values)
    sd = math.sqrt(sum((v - mu) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mu, sd


def group_rows(rows, keys, prefix="", empty="runs"):
    """Rows grouped by their values of `keys`, named "prefix: key=value, ..."."""
    groups = {}
    for r in rows:
        name = ", ".join(f"{a.split('.')[-1]}={r[a]}" for a in keys)
        full = prefix + (": " + name if name else "") if prefix else (name or empty)
        groups.setdefault(full, []).append(r)
    return groups


def accuracy_curve(ax, rows, x_axis, label, column="final_average_accuracy", **style):
    """Final average accuracy (mean ± std over seeds) against x_axis; returns the x values."""
    by_x = {}
    for r in rows:
        if as_float(r.get(column)) is not None:
            by_x.setdefault(float(r[x_axis]), []).append(100 * float(r[column]))
    xs = sorted(by_x)
    stats = [mean_std(by_x[x]) for x in xs]
    style.setdefault("marker", "o")
    ax.errorbar(xs, [m for m, _ in stats], yerr=[sd for _, sd in stats], capsize=3, label=label, **style)
    return xs


def finish(ax, xlabel, ylabel, path, legend_size=8):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(ax.get_legend_handles_labels()[1]) > 6:
        # Many series: the legend goes beside the axes instead of over the curves.
        ax.legend(fontsize=legend_size, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=legend_size)
    save(ax.figure, path)


def log_x_if_wide(ax, xs):
    if xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")


def sweep_plots(sweep_dir):
    axes, rows = sweep_rows(sweep_dir)
    if not rows:
        print("no finished runs to plot", file=sys.stderr)
        return
    numeric = [a for a in axes if all(as_float(r[a]) is not None for r in rows)]
    x_axis = "memory.retention" if "memory.retention" in numeric else (numeric[0] if numeric else None)
    groups = group_rows(rows, [a for a in axes if a != x_axis])
    if x_axis:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        xs_all = []
        for name, rs in sorted(groups.items()):
            xs_all += accuracy_curve(ax, rs, x_axis, name)
        log_x_if_wide(ax, xs_all)
        finish(ax, x_axis, "final average class-IL accuracy (%)", os.path.join(sweep_dir, "plots", f"accuracy_vs_{x_axis.replace('.', '_')}.png"))
        if any(as_float(r.get("final_task_il_accuracy")) is not None for r in rows):
            # Task-IL next to class-IL: the gap between them is old-vs-new calibration of the head.
            fig, ax = plt.subplots(figsize=(7, 4.5))
            xs_all = []
            for name, rs in sorted(groups.items()):
                xs_all += accuracy_curve(ax, rs, x_axis, name, column="final_task_il_accuracy")
            log_x_if_wide(ax, xs_all)
            finish(ax, x_axis, "final average task-IL accuracy (%)", os.path.join(sweep_dir, "plots", f"task_il_accuracy_vs_{x_axis.replace('.', '_')}.png"))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rs in sorted(groups.items()):
        pts = [(float(r["memory_bytes"]), 100 * float(r["final_average_accuracy"])) for r in rs if as_float(r["memory_bytes"]) is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=name)
    if any(as_float(r["memory_bytes"]) and float(r["memory_bytes"]) > 0 for r in rows):
        ax.set_xscale("symlog")
    finish(ax, "memory (bytes)", "final average accuracy (%)", os.path.join(sweep_dir, "plots", "accuracy_vs_memory_bytes.png"))
    # Fig. 5 style: average accuracy over the seen tasks after each task, one line per cell
    # (mean over seeds).
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for name, rs in sorted(groups.items()):
        by_cell = {}
        for r in rs:
            path = os.path.join(r["run_dir"], "metrics.json")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                avg = json.load(f).get("average_accuracy", [])
            cell = ", ".join(f"{a.split('.')[-1]}={r[a]}" for a in axes) or name
            by_cell.setdefault(cell, []).append([100 * a for a in avg])
        for cell, curves in sorted(by_cell.items()):
            n = min(len(c) for c in curves)
            if n == 0:
                continue
            ax.plot(range(1, n + 1), [sum(c[t] for c in curves) / len(curves) for t in range(n)], marker="o", label=cell)
            drawn = max(drawn, n)
    if drawn:
        ax.set_xticks(range(1, drawn + 1))
        finish(ax, "after training task", "average accuracy on the tasks so far (%)", os.path.join(sweep_dir, "plots", "average_accuracy_over_tasks.png"))
    else:
        plt.close(fig)
    for r in rows:
        if os.path.exists(os.path.join(r["run_dir"], "metrics.json")):
            run_plots(r["run_dir"])


def compare_plots(out_dir, sweep_dirs):
    sweeps = []
    for d in sweep_dirs:
        axes, rows = sweep_rows(d)
        sweeps.append((os.path.basename(os.path.normpath(d)), axes, rows))
    if not any(rows for _, _, rows in sweeps):
        print("no finished runs to plot", file=sys.stderr)
        return
    # The x axis: memory.retention if any sweep has it, else the first numeric axis found.
    candidates = []
    for _, axes, rows in sweeps:
        candidates += [a for a in axes if rows and all(as_float(r[a]) is not None for r in rows)]
    x_axis = "memory.retention" if "memory.retention" in candidates else (candidates[0] if candidates else None)
    markers = "osD^vP*Xh"
    if x_axis:
        fig, ax = plt.subplots(figsize=(8, 5))
        xs_all = []
        flat = []
        # Colours repeat after 10 (20) series: each sweep also gets its own marker and line
        # style, so series of different sweeps differ even where colours repeat.
        grouped = [(i, axes, group_rows(rows, [a for a in axes if a != x_axis], label)) for i, (label, axes, rows) in enumerate(sweeps) if rows]
        n_series = sum(len(groups) for _, axes, groups in grouped if x_axis in axes)
        palette = plt.get_cmap("tab20").colors if n_series > 10 else [f"C{i}" for i in range(10)]
        line_styles = ["-", "-.", ":", (0, (5, 1))]
        k = 0
        for i, axes, groups in grouped:
            for name, rs in sorted(groups.items()):
                accs = [100 * float(r["final_average_accuracy"]) for r in rs]
                if x_axis not in axes:
                    # A sweep at one retention (e.g. core tokenset @ 1 %) is a point at the
                    # memory fraction its runs kept; no memory or all data are reference lines.
                    fr = [as_float(r.get("memory_fraction", "")) for r in rs]
                    if x_axis == "memory.retention" and all(f is not None and 0 < f < 0.999 for f in fr):
                        mu, sd = mean_std(accs)
                        x = sum(fr) / len(fr)
                        xs_all.append(x)
                        ax.errorbar([x], [mu], yerr=[sd], marker="*", markersize=12, capsize=3, linestyle="none", label=f"{name} ({mu:.1f} %)")
                    else:
                        flat.append((name, accs))
                    continue
                xs_all += accuracy_curve(ax, rs, x_axis, name, color=palette[k % len(palette)], marker=markers[i % len(markers)],
                                         linestyle=line_styles[i % len(line_styles)])
                k += 1
        for i, (label, values) in enumerate(flat):
            mu, sd = mean_std(values)
            line = ax.axhline(mu, linestyle="--", color=f"C{(i + 5) % 10}", label=f"{label} ({mu:.1f} %)")
            if sd > 0:
                ax.axhspan(mu - sd, mu + sd, color=line.get_color(), alpha=0.1)
        log_x_if_wide(ax, xs_all)
        finish(ax, x_axis, "final average accuracy (%)", os.path.join(out_dir, "plots", f"accuracy_vs_{x_axis.replace('.', '_')}.png"), legend_size=7)
    fig, ax = plt.subplots(figsize=(8, 5))
    positive = False
    for i, (label, axes, rows) in enumerate(sweeps):
        # One series per sweep and value of its non-numeric axes (numeric ones vary along x).
        kinds = [a for a in axes if not all(as_float(r[a]) is not None for r in rows)]
        for name, rs in sorted(group_rows(rows, kinds, label).items()):
            pts = [(float(r["memory_bytes"]), 100 * float(r["final_average_accuracy"])) for r in rs if as_float(r["memory_bytes"]) is not None]
            positive = positive or any(p[0] > 0 for p in pts)
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=markers[i % len(markers)], label=name)
    if positive:
        ax.set_xscale("symlog", linthresh=1e4)
    finish(ax, "memory (bytes)", "final average accuracy (%)", os.path.join(out_dir, "plots", "accuracy_vs_memory_bytes.png"))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--compare":
        if len(sys.argv) < 5:
            print("usage: plot_report.py --compare OUT SWEEP1 SWEEP2 ...", file=sys.stderr)
            sys.exit(2)
        compare_plots(sys.argv[2], sys.argv[3:])
        return
    d = sys.argv[1]
    if os.path.exists(os.path.join(d, "sweep.csv")):
        sweep_plots(d)
    elif os.path.exists(os.path.join(d, "metrics.json")):
        run_plots(d)
    else:
        print(f"{d}: neither a run folder (metrics.json) nor a sweep folder (sweep.csv)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
