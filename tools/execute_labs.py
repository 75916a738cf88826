"""Execute the labs into the book's jupyter-cache, side by side, before jupyter-book builds.

jupyter-book (myst-nb, ``execute_notebooks: cache``) runs the labs one after another,
each with every core. The labs' steps are small enough that a second thread adds far
less than a second core would: on 2 cores, two labs side by side on one thread each
ran the default course in 320 s of wall time, against 423-498 s one after another
(2026-12-04, labs 1-17). ``make book`` therefore runs this first: it executes, in
``--jobs`` processes with ``OMP_NUM_THREADS`` = cores / jobs, every lab the cache does
not hold yet, exactly as myst-nb would (``single_nb_execution`` in the lab's folder,
the same timeout), and stores each result as myst-nb does. jupyter-book then finds
every lab cached and only builds the pages.

A lab that fails is not cached: jupyter-book runs it again and reports the error as it
always does (-W fails the build). Exits 0 when every lab is cached, 3 when one failed
(``make book`` then builds the editions one after the other, so that only the English
build reruns it, instead of both at once).

    python tools/execute_labs.py CACHE_DIR [--jobs N] [LAB.ipynb ...]
"""
import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn

from lab_order import longest_first

ROOT = Path(__file__).resolve().parent.parent


def execute(path, threads, timeout):
    from jupyter_cache.executors.utils import single_nb_execution

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # the kernel inherits them
        os.environ[var] = str(threads)
    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(path.parent), allow_errors=False,
                                 timeout=timeout, meta_override=True)
    error = None
    if result.err is not None:
        error = f"{type(result.err).__name__}: {str(result.err).strip()[-300:]}"
    return path, nb, result.time, error


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache", type=Path, help="the jupyter-cache folder jupyter-book uses")
    ap.add_argument("labs", nargs="*", type=Path, help="default: every lab in labs/")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ap.add_argument("--jobs", type=int, default=cores, help=f"labs at once (default {cores})")
    args = ap.parse_args()
    timeout = yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]["timeout"]
    cache = get_cache(str(args.cache))
    labs = [p.resolve() for p in args.labs] or sorted((ROOT / "labs").glob("*.ipynb"))
    todo = []
    for lab in labs:
        try:
            cache.match_cache_notebook(nbformat.read(lab, as_version=4))
        except KeyError:
            todo.append(lab)
    if not todo:
        print(f"execute_labs: all {len(labs)} labs cached")
        return 0
    jobs = max(1, min(args.jobs, len(todo)))
    threads = max(1, cores // jobs)
    print(f"execute_labs: {len(todo)} of {len(labs)} labs to run, {jobs} at a time, "
          f"{threads} thread(s) each", flush=True)
    start, failed = time.perf_counter(), 0
    # longest first (tools/lab_order.py): no long lab left to run alone at the end
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(execute, lab, threads, timeout) for lab in longest_first(todo)]
        for future in as_completed(futures):
            path, nb, seconds, error = future.result()
            name = path.relative_to(ROOT).as_posix()
            if error:
                failed += 1
                print(f"  {name:34s} {seconds:6.1f} s  FAILED ({error.splitlines()[-1][:150]})",
                      flush=True)
                continue
            stage = cache.add_nb_to_project(str(path))
            cache.cache_notebook_bundle(
                CacheBundleIn(nb, stage.uri, data={"execution_seconds": seconds}),
                check_validity=False, overwrite=True)
            print(f"  {name:34s} {seconds:6.1f} s  ok", flush=True)
    print(f"execute_labs: {time.perf_counter() - start:.0f} s wall"
          + (f", {failed} failed (jupyter-book reruns them and reports)" if failed else ""))
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
