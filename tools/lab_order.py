"""The labs, longest first: the order in which two workers take them, side by side.

``make book`` (``tools/execute_labs.py``), nbval and ``make robust`` run two labs at a
time; each worker takes the next lab when it is done. Started last, a long lab runs
alone at the end while the other core idles (lab 1, last in number order, ran alone
for about 30 s of each pass). Longest first, the last labs are the short ones.

SECONDS: each lab under ``default`` on one thread beside another (the clean-clone
``make book`` of 2026-12-05 on an AMD EPYC; the ``ci`` order is nearly the same). A
lab not listed, a new one, goes first: measure it and add it.

    python3 tools/lab_order.py     # the labs' paths in that order, for the Makefile
"""
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SECONDS = {
    "15_ledger": 65.6, "10_lr_schedules": 60.6, "11_fine_tuning": 55.1,
    "16_capstone": 54.2, "17_weight_averaging": 47.9, "12_pruning": 44.4,
    "13_ensembles": 41.5, "01_overfitting": 39.6, "06_dropout": 39.2,
    "04_weight_decay": 37.0, "08_augmentation": 35.5, "18_flat_minima": 33.5,
    "14_noise": 30.0, "19_memorisation": 29.5, "07_batchnorm": 26.5,
    "20_adversarial": 26.2, "05_l1_sparsity": 20.3, "09_early_stopping": 19.8,
    "02_bias_variance": 18.9, "03_model_selection": 11.5,
}


def longest_first(labs):
    """``labs`` (paths) sorted by their measured seconds, longest first; unknown first."""
    return sorted(labs, key=lambda p: (-SECONDS.get(Path(p).stem, math.inf), str(p)))


if __name__ == "__main__":
    print(" ".join(p.relative_to(ROOT).as_posix()
                   for p in longest_first((ROOT / "labs").glob("*.ipynb"))))
