"""The Chinese edition's catalogs against the English pages as they are now.

The English pages are cut into messages afresh (Sphinx's gettext builder, nothing
executed); every message must have a Chinese translation that is not fuzzy and keeps
every role ({glue:text} numbers first), math span, code span and link target.
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import i18n  # noqa: E402


@pytest.fixture(scope="module")
def templates():
    subprocess.run([sys.executable, str(ROOT / "tools" / "i18n.py"), "pot"], check=True,
                   cwd=ROOT)
    return {p.relative_to(i18n.POT).with_suffix(".po"): i18n._read(p)
            for p in sorted(i18n.POT.rglob("*.pot"))}


def test_every_page_has_its_catalog(templates):
    assert len(templates) > 30
    catalogs = {p.relative_to(i18n.LOCALE) for p in i18n.LOCALE.rglob("*.po")}
    assert catalogs == set(templates), \
        f"missing {set(templates) - catalogs}, stale {catalogs - set(templates)}: " \
        "run `python tools/i18n.py update`"


def test_every_message_is_translated(templates):
    missing = []
    for rel, template in templates.items():
        path = i18n.LOCALE / rel
        done = {m.id for m in i18n._read(path) if m.id and m.string and not m.fuzzy} \
            if path.exists() else set()
        missing += [f"{rel}: {m.id[:70]!r}" for m in template if m.id and m.id not in done]
    assert not missing, f"{len(missing)} messages untranslated or fuzzy " \
        f"(tools/i18n.py update, then translate):\n" + "\n".join(missing[:20])


def test_translations_keep_every_number_and_reference():
    found = [p for path in sorted(i18n.LOCALE.rglob("*.po")) for p in i18n.problems(path)]
    assert not found, "\n".join(found[:20])


@pytest.mark.parametrize("english,chinese,lost", [
    ("MSE of {glue:text}`../labs/x.ipynb::a:.3f` at $\\sigma$.",
     "均方误差为 {glue:text}`../labs/x.ipynb::a:.3f`，$\\sigma$。", False),
    ("MSE of {glue:text}`../labs/x.ipynb::a:.3f` at $\\sigma$.", "均方误差为 0.539，$\\sigma$。",
     True),
    ("the {term}`noise floor <Noise floor>`", "{term}`噪声下限 <Noise floor>`", False),
    ("the {term}`noise floor <Noise floor>`", "{term}`噪声下限 <Overfitting>`", True),
    ("see {cite:t}`zhang2017` and `fit()`", "见 {cite:t}`zhang2017`", True),
    ("[the guide](../running.md)", "[指南](../running.md)", False),
])
def test_the_check_catches_a_lost_token(english, chinese, lost):
    assert (i18n.tokens(english) != i18n.tokens(chinese)) == lost


@pytest.mark.parametrize("english,chinese,changed", [
    ("\nR = \\frac1n \\sum_i \\ell_i,\n\\qquad \\text{train}\n",
     "R = \\frac1n \\sum_i \\ell_i,\n\\qquad \\text{训练}", False),
    ("\nR = \\frac1n \\sum_i \\ell_i,\n\\qquad\n", "R = \\frac1n \\sum_i \\ell_i,\n\n\\qquad", True),
    ("\nR = \\frac1n \\sum_i \\ell_i\n", "R = \\frac1n \\sum_j \\ell_j", True),
    ("a paragraph with $x$\n\nand more", "一段\n\n文字 $x$", False),
    # lines joined: \qquadw is an unknown control word, not \qquad w
    ("\nR,\\qquad\nw = 1\n", "R,\\qquadw = 1", True),
    # an equation on one line (no leading line break)
    ("\\hat x = \\frac{x}{2}", "\\hat x = \\frac{x}{3}", True),
    ("\\hat x = \\frac{x}{2}", "\\hat x = \\frac{x}{2}", False),
])
def test_the_check_catches_a_changed_equation(english, chinese, changed):
    assert i18n.equation_changed(english, chinese) == changed
