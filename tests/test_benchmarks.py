import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script,args", [
    ("fit_throughput.py", ["--epochs", "1", "--repeats", "1"]),
    ("sweep_throughput.py", ["--k", "3", "--epochs", "1", "--repeats", "1"]),
    ("roofline.py", ["--k", "3", "--epochs", "1", "--repeats", "1"]),
    ("cnn_sweep.py", ["--k", "3", "--epochs", "1", "--repeats", "1", "--n-train", "200"]),
])
def test_benchmark_ends_with_its_figure(script, args):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"(?:ratio|peak_fraction): (\d+\.\d+)", last)
    assert match and float(match.group(1)) > 0, out
