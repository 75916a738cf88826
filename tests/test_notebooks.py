"""The labs as stored: no outputs, paired with chapters, glue keys that exist, deterministic."""
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LABS = sorted((ROOT / "labs").glob("*.ipynb"))
CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))
GLUE_REF = re.compile(r"(?:glue:text\}`|lab-figure\} )\.\./labs/([\w.]+\.ipynb)::(\w+)")


def read(path):
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.name)
def test_stored_without_outputs(lab):
    for cell in read(lab).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{lab.name}: clear outputs before committing"


def test_every_chapter_has_its_lab_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    assert CHAPTERS and len(CHAPTERS) == len(LABS)
    for chapter in CHAPTERS:
        lab = ROOT / "labs" / (chapter.stem + ".ipynb")
        assert lab.exists(), f"{chapter.name} has no lab {lab.name}"
        assert f"file: chapters/{chapter.stem}" in toc and f"file: labs/{chapter.stem}" in toc


def _key_pattern(node):
    """A regex for a glue key written as a string or f-string literal (fields match any word)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(re.escape(v.value) if isinstance(v, ast.Constant) else r"\w+"
                       for v in node.values)
    return None


def glued_key_patterns(lab):
    """Regexes for every key a lab glues: glue_numbers(key=...) or glue_text(key=...),
    glue_numbers(**{f"..": ..}),
    glue_figure("key", fig) and explore(..., glue_key="key")."""
    source = "\n".join(c.source for c in read(ROOT / "labs" / lab).cells if c.cell_type == "code")
    patterns = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", getattr(node.func, "attr", ""))
        if name in ("glue_numbers", "glue_text"):
            for kw in node.keywords:
                if kw.arg is not None:
                    patterns.append(re.escape(kw.arg))
                elif isinstance(kw.value, ast.DictComp):
                    patterns.append(_key_pattern(kw.value.key))
                elif isinstance(kw.value, ast.Dict):
                    patterns += [_key_pattern(k) for k in kw.value.keys]
        elif name == "glue_figure" and node.args:
            patterns.append(_key_pattern(node.args[0]))
        elif name == "explore":
            patterns += [_key_pattern(kw.value) for kw in node.keywords if kw.arg == "glue_key"]
    for p in patterns:  # an f-string key must name what it glues, not only its fields
        assert p and re.match(r"\w{3}", p), f"{lab}: glue key pattern {p!r} is too vague to check"
    return patterns


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_quotes_only_keys_its_labs_glue(chapter):
    refs = GLUE_REF.findall(chapter.read_text())
    assert refs, f"{chapter.name} quotes no measured number"
    for lab, key in refs:
        patterns = glued_key_patterns(lab)
        assert any(re.fullmatch(p, key) for p in patterns), \
            f"{chapter.name} quotes {lab}::{key}, which the lab never glues"


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.name)
def test_labs_import_what_they_use(lab):
    source = "\n".join(c.source for c in read(lab).cells if c.cell_type == "code")
    assert "import *" not in source
    assert re.search(r"^\s*assert ", source, re.M), f"{lab.name} asserts nothing"


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.name)
def test_every_seed_goes_through_labkit(lab):
    """LABKIT_SEED must shift every seed: no generator seeded by hand in a lab."""
    source = "\n".join(c.source for c in read(lab).cells if c.cell_type == "code")
    bare = re.search(r"(manual_seed|default_rng|random\.seed)\((?!seed\()|torch\.Generator\(", source)
    assert not bare, f"{lab.name} seeds by hand ({bare and bare.group(0)!r}): use labkit.runtime"


# The lab's code cells, run in a fresh process by IPython's shell, without a kernel:
# in CI a kernel run of this test stalled four times (one of the two runs waited out
# the client's 600 s cell timeout, kernel idle), and a shell has no messaging to stall.
# Writes every value the lab glues, by name, as text.
RUN_LAB = """
import json, os, sys
import nbformat
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
nb = nbformat.read(sys.argv[1], as_version=4)
os.chdir(sys.argv[2])
from traitlets.config import Config
config = Config()
config.HistoryManager.enabled = False  # two shells at once: no shared history database
shell, values = InteractiveShell.instance(config=config), {}
for cell in nb.cells:
    if cell.cell_type != "code":
        continue
    with capture_output(display=True) as captured:
        result = shell.run_cell(cell.source)
    if not result.success:
        captured.show()  # the cell's printed output, before its error
    result.raise_error()
    for output in captured.outputs:
        meta = (output.metadata or {}).get("scrapbook")
        if meta:  # myst-nb's glue: text under its mime prefix (a number: its repr)
            values[meta["name"]] = output.data[meta.get("mime_prefix", "") + "text/plain"]
with open(sys.argv[3], "w") as f:
    json.dump(values, f, indent=1)
"""


def start_lab(path, out):
    # One thread each: the two runs go side by side on two cores. Widgets as the site
    # shows them (a static figure), no progress bars, figures drawn off screen.
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", LABKIT_STATIC="1",
               TQDM_DISABLE="1")
    return subprocess.Popen([sys.executable, "-c", RUN_LAB, str(path), str(path.parent),
                             str(out)], env=env)


def test_lab_gives_the_same_numbers_twice(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_PROFILE", "ci")
    # lab 5: seeds, data, fit and sweep_fit with a grid, glued numbers, in 10 s under ci
    # (lab 1, the first choice, took 28 s of both cores in every unit-test run)
    lab = ROOT / "labs" / os.environ.get("LABKIT_DETERMINISM_LAB", "05_l1_sparsity.ipynb")
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    runs = [start_lab(lab, out) for out in outs]
    try:
        codes = [run.wait(timeout=300) for run in runs]
    finally:
        for run in runs:
            run.kill()
    assert codes == [0, 0], f"{lab.name}: a run failed (exit codes {codes})"
    first, second = (json.loads(out.read_text()) for out in outs)
    # every glued number, not only the figures' reprs (before 2026-12-05 the test read
    # only plain text/plain outputs: for lab 5, one figure's "<Figure size ...>")
    assert len(first) >= 10, f"{lab.name} glued only {sorted(first)}"
    assert first == second, json.dumps({"first": first, "second": second}, indent=1)


MAX_LINE = 88  # the lab pages show this many characters of code without scrolling


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.name)
def test_code_lines_fit_the_page(lab):
    long = [f"cell {i}: {line}" for i, cell in enumerate(read(lab).cells)
            if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > MAX_LINE]
    assert not long, f"{lab.name}: lines over {MAX_LINE} characters:\n" + "\n".join(long)


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.name)
def test_every_figure_cell_gives_its_image_alt_text(lab):
    # the lab page shows each figure a cell draws; its alt text lives in the cell's
    # metadata (mystnb.image.alt), or the site test fails on an image without one
    for cell in read(lab).cells:
        if cell.cell_type == "code" and re.search(r"\b(glue_figure|explore)\(", cell.source):
            alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
            assert alt.strip(), f"{lab.name}: a figure cell has no mystnb.image.alt metadata"


def test_every_lab_has_its_place_in_the_longest_first_order(monkeypatch):
    # make book, nbval and make robust hand the labs to two workers longest first
    # (tools/lab_order.py); a lab missing from its table would go first, unmeasured
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    from lab_order import SECONDS

    assert {p.stem for p in LABS} == set(SECONDS), "add the lab's seconds to tools/lab_order.py"
    # nbval takes the labs in the Makefile's order only if pytest-xdist keeps it
    assert "--no-loadscope-reorder" in (ROOT / "Makefile").read_text()
