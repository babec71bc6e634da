"""Benchmark: ``lsap-demo``'s wall time and CPU time, this tree against another lsap source tree.

Each run is ``python -m lsap.cli.demo`` in a subprocess with ``PYTHONPATH`` set to the tree, the
same overrides and its own output folder, alternating between the trees, all in one invocation
(so the ratio compares runs made under the same machine load). CPU seconds are the children's
user+system time (``OMP_NUM_THREADS=1`` unless set): on a shared machine they move little with the
load, while wall time grows with it.

    python bench/demo.py --baseline-tree /tmp/lsap-main                 # the default demo (toy32)
    python bench/demo.py --baseline-tree /tmp/lsap-main --repeats 2 -- inversion.steps=50
    python bench/demo.py -- inversion.cuda_graphs=true                  # this tree only, an option

Overrides after ``--`` go to both trees (an option an older tree does not know fails there).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_demo(tree: Path, overrides: list[str], out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``lsap-demo`` run from ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "lsap.cli.demo", f"hydra.run.dir={out}", *overrides]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"lsap-demo from {tree} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--baseline-tree", default=None, help="an lsap source tree timed as 'baseline'")
    p.add_argument("--repeats", type=int, default=1, help="runs per tree (median)")
    p.add_argument("overrides", nargs="*", help="lsap-demo overrides (after --)")
    args = p.parse_args()
    trees = {"lsap": ROOT}
    if args.baseline_tree:
        trees["baseline"] = Path(args.baseline_tree).resolve()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in trees}
    print(
        f"lsap-demo {' '.join(args.overrides) or '(defaults)'}; {args.repeats} run(s) per tree; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for name, tree in trees.items():
                wall, cpu = run_demo(tree, args.overrides, Path(tmp) / f"{name}{i}")
                times[name].append((wall, cpu))
                print(f"  {name:<8} run {i}: wall {wall:7.1f} s  CPU {cpu:7.1f} s", flush=True)
    med = {k: tuple(statistics.median(x[j] for x in v) for j in (0, 1)) for k, v in times.items()}
    for name, (wall, cpu) in med.items():
        print(f"  {name:<8} median: wall {wall:7.1f} s  CPU {cpu:7.1f} s")
    if "baseline" in med:
        (bw, bc), (lw, lc) = med["baseline"], med["lsap"]
        print(f"  speed-up lsap vs baseline tree: CPU x{bc / lc:.2f}, wall x{bw / lw:.2f}")
    print(f"  load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
