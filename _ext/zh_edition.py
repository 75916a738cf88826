"""Two repairs to Sphinx (7.4) for the Chinese edition.

Translated display equations. Sphinx translates a literal-type node, which a display
equation (``math_block``) is, by wrapping the translation in reStructuredText's
literal-block markup (``::`` and an indent) and parsing that with the page's parser.
Under MyST that markup is a paragraph reading ``::``, which Sphinx then wrote into the
equation: every display equation of the Chinese edition rendered as "::" (until
2026-12-05; only the equations whose translation was byte for byte the English one
survived). ``TranslateDisplayMath`` runs just before Sphinx's own transform
(``Locale``, priority 20) and puts the translated TeX into the equation itself, so
that Sphinx finds nothing left to translate there. ``tests/test_site.py`` compares
every equation of the two editions.

The search index. Sphinx's Chinese indexer keeps every Latin word it has seen in a
list and looks each word up in that list as it indexes it: time quadratic in the
words of the site, 9 of the 39 s of the Chinese build on 2 cores. The list becomes a
set, which answers the same membership questions (the same index, byte for byte).
"""
import os

from docutils import nodes
from sphinx.locale import init as init_locale
from sphinx.transforms import SphinxTransform
from sphinx.util.i18n import docname_to_domain
from sphinx.util.nodes import extract_messages


class TranslateDisplayMath(SphinxTransform):
    default_priority = 19  # sphinx.transforms.i18n.Locale: 20

    def apply(self, **kwargs):
        if not self.config.language or self.config.language == "en":
            return
        domain = docname_to_domain(self.env.docname, self.config.gettext_compact)
        dirs = [os.path.join(self.env.srcdir, d) for d in self.config.locale_dirs]
        catalog, found = init_locale(dirs, self.config.language, domain)
        if not found:
            return
        for node, msg in list(extract_messages(self.document)):
            if not isinstance(node, nodes.math_block):
                continue
            tex = catalog.gettext(msg)
            if tex.strip() and tex != msg:
                node[:] = [nodes.Text(tex)]
                # Locale now looks the translated TeX up, finds no message and leaves it
                node.rawsource = tex


class _Words(set):
    """A set that takes ``extend``, the one list method the indexer calls."""

    def extend(self, words):
        self.update(words)


def setup(app):
    app.add_transform(TranslateDisplayMath)
    from sphinx.search.zh import SearchChinese
    if isinstance(SearchChinese.latin_terms, list):
        SearchChinese.latin_terms = _Words(SearchChinese.latin_terms)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
