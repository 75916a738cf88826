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
    if script == "roofline.py":  # the ceiling: every operation of the sweep timed alone
        assert "\nnot replayed (left out of the sum): none\n" in out, out
        ceiling = re.search(r"^ceiling: \d+\.\d+ s = .* \((\d+\.\d+) of peak\); "
                            r"the sweep ran at (\d+\.\d+) of it$", out, re.M)
        assert ceiling and float(ceiling.group(1)) > 0, out
        assert 0 < float(ceiling.group(2)) < 1.5, out  # near its ceiling, not far above


def test_course_time_times_each_lab_and_reports_failures(tmp_path):
    import nbformat

    def lab(name, code):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, tmp_path / name)
        return str(tmp_path / name)

    good = lab("01_good.ipynb", "import os\nassert os.environ['LABKIT_PROFILE'] == 'ci'")
    bad = lab("02_bad.ipynb", "assert 1 + 1 == 3, 'the claim failed'")
    out = tmp_path / "executed"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "course_time.py"),
                          "--profile", "ci", "--out", str(out), good, bad],
                         capture_output=True, text=True, timeout=300)
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 1, run  # a failed lab fails the benchmark
    assert re.fullmatch(r"01_good\.ipynb\s+\d+\.\d s  ok", lines[1]), lines
    assert "02_bad.ipynb" in lines[2] and "the claim failed" in lines[2], lines
    seconds = [float(line.split()[1]) for line in lines[1:3]]
    assert lines[-1] == f"course_seconds: {sum(seconds):.1f}" or \
        abs(float(lines[-1].split()[-1]) - sum(seconds)) < 0.11, lines
    assert (out / "01_good.ipynb").exists() and (out / "02_bad.ipynb").exists()
