"""Serve MathJax from the built site itself, so math renders with no network.

Sphinx links MathJax from a CDN by default; the book must work offline. The
MathJax 3 files come from the ``django-static-mathjax`` wheel (pure static
files, no Django needed), and the single-file ``tex-mml-chtml`` component plus
its web fonts are copied into ``_static/mathjax``.
"""
import shutil
from pathlib import Path

SUBDIR = "mathjax"


def _source():
    import mathjax  # the django-static-mathjax wheel

    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / "tex-mml-chtml.js").is_file():
        raise FileNotFoundError(f"MathJax files not found under {es5}")
    return es5


def _config_inited(app, config):
    config.mathjax_path = f"{SUBDIR}/tex-mml-chtml.js"


def _copy(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    es5, dest = _source(), Path(app.outdir) / "_static" / SUBDIR
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(es5 / "tex-mml-chtml.js", dest / "tex-mml-chtml.js")
    fonts = Path("output") / "chtml" / "fonts" / "woff-v2"
    shutil.copytree(es5 / fonts, dest / fonts, dirs_exist_ok=True)


def setup(app):
    _source()  # fail at start-up, not after the build, if the files are missing
    app.connect("config-inited", _config_inited)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
