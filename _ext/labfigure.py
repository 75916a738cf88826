"""The ``lab-figure`` directive: a figure glued in a lab notebook, shown in a chapter.

myst-nb pastes images across documents only through its bare ``glue``
directive, which takes no caption, name or alt text. This directive wraps that
same cross-document reference in a proper figure::

    :::{lab-figure} ../labs/01_overfitting.ipynb::fig_curves
    :alt: What the image shows, for readers who cannot see it.
    :name: fig-01-curves

    The caption.
    :::

The lab must display the glued figure (``glue(key, fig)``, the default
``display=True``), so the image file exists in the built site.

myst-nb pastes PNG and JPEG figures across documents but not SVG, which labkit
uses (sharp on any screen, shown at its design size); for an SVG it pastes the
figure's text ("<Figure size ...>"). ``PasteLabFigureSvg`` runs just before
myst-nb's paste and points the figure at the SVG file the lab page wrote, named
as myst-nb names it (the SHA-256 of its bytes).
"""
import hashlib
import os
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from myst_nb.ext.glue.crossref import ReplacePendingGlueReferences, read_glue_cache
from myst_nb.ext.glue.utils import (PendingGlueReference, PendingGlueReferenceError,
                                    create_pending_glue_ref)
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective


class lab_alt(nodes.Element, addnodes.translatable):  # noqa: N801 (docutils node names)
    """The figure's alt text, held in the doctree until the image exists.

    A translatable node: Sphinx's gettext builder extracts the alt text as a message of
    the page, and the Chinese build puts its translation here (a directive option alone
    is not translated). ``SetLabFigureAlt`` moves it onto the image and removes the node.
    """

    def preserve_original_messages(self):
        self["original_alt"] = self["alt"]

    def apply_translated_message(self, original_message, translated_message):
        self["alt"] = translated_message

    def extract_original_messages(self):
        return [self["alt"]]


class LabFigure(SphinxDirective):
    required_arguments = 1
    has_content = True
    option_spec = {"alt": directives.unchanged_required, "name": directives.unchanged}

    def run(self):
        doc, sep, key = self.arguments[0].partition("::")
        if not sep or "alt" not in self.options:
            raise self.error("lab-figure needs 'path/to/lab.ipynb::key' and an :alt: option")
        source, line = self.get_source_info()
        try:
            ref = create_pending_glue_ref(self.state.document, source, line, doc, key)
        except PendingGlueReferenceError as exc:
            raise self.error(str(exc)) from None
        alt = lab_alt(alt=self.options["alt"])
        figure = nodes.figure("", ref, alt, lab_alt=True)
        self.set_source_info(figure)
        self.set_source_info(alt)
        self.add_name(figure)
        if self.content:
            holder = nodes.Element()
            self.state.nested_parse(self.content, self.content_offset, holder)
            first = holder[0]
            if not isinstance(first, nodes.paragraph):
                raise self.error("lab-figure caption must be a paragraph")
            caption = nodes.caption(first.rawsource, "", *first.children)
            caption.source, caption.line = first.source or source, first.line or line
            figure += caption  # with a source, gettext extracts it as a message
        return [figure]


class PasteLabFigureSvg(SphinxPostTransform):
    """Replace a lab-figure's pending glue reference to an SVG by the image itself."""

    default_priority = ReplacePendingGlueReferences.default_priority - 1

    def apply(self, **kwargs):
        builder = self.app.builder
        for ref in list(self.document.findall(PendingGlueReference)):
            if "lab_alt" not in ref.parent:
                continue
            output = read_glue_cache(self.env.mystnb_config.output_folder, ref.refdoc)
            svg = output.get(ref.key, {}).get("data", {}).get("image/svg+xml")
            if svg is None:
                continue  # not an SVG: myst-nb pastes it
            if isinstance(svg, list):
                svg = "".join(svg)
            # the file name myst-nb's render_image gave it on the lab page
            data = os.linesep.join(svg.splitlines()).encode("utf-8")
            name = hashlib.sha256(data).hexdigest() + ".svg"
            path = Path(builder.outdir, builder.imagedir, name)
            uri = os.path.relpath(path, Path(builder.outdir, self.env.docname).parent)
            image = nodes.image(uri=Path(uri).as_posix())
            image["candidates"] = {"*": image["uri"]}
            ref.replace_self(image)


class SetLabFigureAlt(SphinxPostTransform):
    """After myst-nb has replaced the glue reference by an image, give it its alt text."""

    default_priority = 50  # myst-nb's ReplacePendingGlueReferences runs at 5

    def apply(self, **kwargs):
        if self.app.builder.name == "gettext":
            return  # it extracts the alt text from the lab_alt node
        for figure in self.document.findall(nodes.figure):
            if "lab_alt" in figure:
                for holder in list(figure.findall(lab_alt)):
                    for image in figure.findall(nodes.image):
                        image["alt"] = holder["alt"]
                    holder.parent.remove(holder)


def setup(app):
    app.add_node(lab_alt)
    app.add_directive("lab-figure", LabFigure)
    app.add_post_transform(PasteLabFigureSvg)
    app.add_post_transform(SetLabFigureAlt)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
