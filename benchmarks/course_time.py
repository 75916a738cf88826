"""How long the course takes a reader: every lab executed as the site build runs it.

Each lab is executed top to bottom in a fresh Jupyter kernel (nbclient, as
jupyter-book does), under ``--profile`` (``default``: a reader's laptop), with
progress bars off, and timed from kernel start to the last cell. Labs run one
after another unless ``--jobs`` says otherwise (only for a machine with cores
to spare: on 2 cores two labs at once slow each other down many times).
``--out DIR`` keeps the executed notebooks (with their glued numbers).

Prints one line per lab (seconds, ok or the error), then ``course_seconds: X``
last: the sum over labs. Exits non-zero if any lab failed.
"""
import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(lab, profile, out, timeout):
    import nbformat
    from nbclient import NotebookClient

    env = {"LABKIT_PROFILE": profile, "TQDM_DISABLE": "1", "LABKIT_STATIC": "1"}
    os.environ.update(env)  # the kernel inherits this process's environment
    nb = nbformat.read(lab, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(lab.parent)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except Exception as exc:  # a failed assertion in a lab is a result to report
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}"
    seconds = time.perf_counter() - start
    if out:
        nbformat.write(nb, Path(out) / lab.name)
    return lab.name, seconds, error


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("labs", nargs="*", type=Path, help="default: every lab in labs/")
    ap.add_argument("--profile", default="default", choices=["ci", "default", "full"])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, help="keep the executed notebooks here")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = ap.parse_args()
    labs = [p.resolve() for p in args.labs] or sorted((ROOT / "labs").glob("*.ipynb"))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    print(f"profile={args.profile} seed base={os.environ.get('LABKIT_SEED', '0')} "
          f"jobs={args.jobs} labs={len(labs)}", flush=True)
    total, failed = 0.0, 0
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run, lab, args.profile, args.out, args.timeout)
                   for lab in labs]
        for f in futures:
            name, seconds, error = f.result()
            total += seconds
            failed += error is not None
            print(f"{name:28s} {seconds:7.1f} s  {error or 'ok'}", flush=True)
    if failed:
        print(f"{failed} of {len(labs)} labs failed", file=sys.stderr)
    print(f"course_seconds: {total:.1f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
