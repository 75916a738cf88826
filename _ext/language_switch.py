"""A link on every page to the same page in the other edition (English <-> 中文).

The English site is the root of the build; the Chinese edition is built from the same
sources (``tools/i18n.py``) into its ``zh/`` folder. Each page's header gets a link to
its counterpart: from ``chapters/06_dropout.html`` to ``zh/chapters/06_dropout.html``
and back, relative, so the site works from any folder or server. The pages also name
each other as ``<link rel="alternate" hreflang=...>``.
"""
from pathlib import Path

EDITIONS = {  # language -> (the other edition's root, relative to this one's; its name)
    "en": ("zh/", "中文", "zh-CN"),
    "zh_CN": ("../", "English", "en"),
}


def _context(app, pagename, templatename, context, doctree):
    other, label, hreflang = EDITIONS[app.config.language or "en"]
    up = "../" * pagename.count("/")
    url = f"{up}{other}{pagename}.html"
    context["language_switch"] = {"url": url, "label": label, "hreflang": hreflang}
    context["metatags"] = context.get("metatags", "") + \
        f'\n<link rel="alternate" hreflang="{hreflang}" href="{url}">'



def _templates(app, config):
    config.templates_path.append(str(Path(__file__).parent / "templates"))
    options = config.html_theme_options
    options["article_header_end"] = list(options.get(
        "article_header_end", ["article-header-buttons.html"])) + ["language-switch.html"]


def setup(app):
    app.connect("config-inited", _templates)
    app.connect("html-page-context", _context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
