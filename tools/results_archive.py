"""Keep the results of sweeps without their checkpoints, and put them back.

A sweep folder (`cts sweep --out DIR`) holds one run folder per cell and seed; each run folder
holds checkpoints and a memory buffer (megabytes) next to the few kilobytes that are the result:
config.yaml, metrics.json (accuracy matrix, memory bytes, times) and summary.md. This tool copies
those record files of every *finished* run (metrics.json with tasks_done == num_tasks), plus the
sweep's sweep.csv / sweep.md / sweep.json, into an archive folder that can be committed, and puts
them back into a sweep folder later. `cts sweep` counts a run folder with a finished metrics.json
as done, so a restored sweep skips what was measured before and only runs the rest: a long grid
(e.g. configs/paper/table1-fmnist.sh) can be built up over several sessions or machines.

Usage:
  results_archive.py save SWEEP_DIR ARCHIVE_DIR      records of finished runs -> ARCHIVE_DIR
  results_archive.py restore ARCHIVE_DIR SWEEP_DIR   records -> SWEEP_DIR, for runs not there
Files are written atomically (temporary file + rename). `restore` never touches a run folder
that already has a metrics.json or a checkpoint of its own (a run in progress or finished here
wins over the archive). Prints one line per run copied and a count. Exit code 2 with a message
naming the folder on bad input (missing folder, not a sweep folder, unreadable metrics.json).
"""
import json
import os
import shutil
import sys

RUN_FILES = ("config.yaml", "metrics.json", "summary.md")
SWEEP_FILES = ("sweep.csv", "sweep.md", "sweep.json")


class InputError(Exception):
    pass


def copy_atomic(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def finished(metrics_path):
    try:
        with open(metrics_path) as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{metrics_path}: not a readable metrics.json ({e})")
    if not isinstance(m, dict):
        raise InputError(f"{metrics_path}: not a metrics.json (expected a JSON object)")
    done, total = m.get("tasks_done", -1), m.get("num_tasks", -2)
    return isinstance(done, int) and done >= 1 and done == total


def run_folders(root):
    """Run folders below a sweep folder: <cell>/seed-<n> holding a metrics.json."""
    out = []
    for cell in sorted(os.listdir(root)):
        cell_dir = os.path.join(root, cell)
        if not os.path.isdir(cell_dir):
            continue
        for seed in sorted(os.listdir(cell_dir)):
            run = os.path.join(cell_dir, seed)
            if seed.startswith("seed-") and os.path.isdir(run) and os.path.isfile(os.path.join(run, "metrics.json")):
                out.append((cell, seed))
    return out


def require_dir(path, what):
    if not os.path.isdir(path):
        raise InputError(f"{path}: no such folder (expected {what})")


def save(sweep_dir, archive_dir):
    require_dir(sweep_dir, "a sweep folder written by cts sweep")
    runs = run_folders(sweep_dir)
    if not runs and not any(os.path.isfile(os.path.join(sweep_dir, f)) for f in SWEEP_FILES):
        raise InputError(f"{sweep_dir}: not a sweep folder (no <cell>/seed-<n>/metrics.json and no sweep.csv)")
    n = 0
    for cell, seed in runs:
        src = os.path.join(sweep_dir, cell, seed)
        if not finished(os.path.join(src, "metrics.json")):
            continue
        for f in RUN_FILES:
            if os.path.isfile(os.path.join(src, f)):
                copy_atomic(os.path.join(src, f), os.path.join(archive_dir, cell, seed, f))
        print(f"saved {cell}/{seed}")
        n += 1
    for f in SWEEP_FILES:
        if os.path.isfile(os.path.join(sweep_dir, f)):
            copy_atomic(os.path.join(sweep_dir, f), os.path.join(archive_dir, f))
    print(f"{n} finished runs saved to {archive_dir}")


def restore(archive_dir, sweep_dir):
    require_dir(archive_dir, "a folder written by results_archive.py save")
    runs = run_folders(archive_dir)
    for cell, seed in runs:  # check the whole archive before anything is copied
        metrics = os.path.join(archive_dir, cell, seed, "metrics.json")
        if not finished(metrics):
            raise InputError(f"{metrics}: the archive holds an unfinished run (tasks_done < num_tasks)")
    n = 0
    for cell, seed in runs:
        src = os.path.join(archive_dir, cell, seed)
        dst = os.path.join(sweep_dir, cell, seed)
        if os.path.exists(os.path.join(dst, "metrics.json")) or os.path.exists(os.path.join(dst, "checkpoint")):
            continue
        # metrics.json last: a run folder counts as done only once its record is complete.
        for f in sorted(RUN_FILES, key=lambda x: x == "metrics.json"):
            if os.path.isfile(os.path.join(src, f)):
                copy_atomic(os.path.join(src, f), os.path.join(dst, f))
        print(f"restored {cell}/{seed}")
        n += 1
    print(f"{n} finished runs restored to {sweep_dir}")


def main(argv):
    if len(argv) != 4 or argv[1] not in ("save", "restore"):
        print("usage: results_archive.py save SWEEP_DIR ARCHIVE_DIR | restore ARCHIVE_DIR SWEEP_DIR", file=sys.stderr)
        return 2
    try:
        (save if argv[1] == "save" else restore)(argv[2], argv[3])
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
