"""The build-status table (myst-nb's ``nb-exec-table``), in words a reader can use.

myst-nb marks each lab ✅ or ❌, which shows as an empty box where no emoji
font is installed, and adds a "Method" column that is ``cache`` for every lab
(every lab runs through jupyter-cache, see ``status.md``). This post-transform
runs just before myst-nb's own and builds the table from the same execution
data: the lab (linked by its title), when it last ran, how long it took, and
"ok" or "failed" (with the error as a tooltip).
"""
import posixpath
from datetime import datetime

from docutils import nodes
from myst_nb.ext.execution_tables import ExecutionStatsNode, ExecutionStatsPostTransform
from myst_nb.sphinx_ import NbMetadataCollector
from sphinx.addnodes import pending_xref
from sphinx.transforms.post_transforms import SphinxPostTransform

WORDS = {  # the table's words in each edition (the page's own prose is in its .po file)
    "en": {"headers": ["Lab", "Last run", "Run time (s)", "Status"], "ok": "ok",
           "failed": "failed"},
    "zh_CN": {"headers": ["实验", "最近一次运行", "运行时间（秒）", "状态"], "ok": "通过",
              "failed": "失败"},
}


def _cell(*children):
    return nodes.entry("", nodes.paragraph("", "", *children))


def status_table(docname, metadata, language="en"):
    words = WORDS.get(language or "en", WORDS["en"])
    table = nodes.table(classes=["colwidths-auto", "lab-status"])
    tgroup = nodes.tgroup(cols=len(words["headers"]))
    table += tgroup
    tgroup.extend(nodes.colspec(colwidth=1) for _ in words["headers"])
    head = nodes.row()
    head.extend(_cell(nodes.Text(h)) for h in words["headers"])
    tgroup += nodes.thead("", head)
    body = nodes.tbody()
    tgroup += body
    for doc in sorted(metadata):
        data = metadata[doc].get("exec_data")
        if not data:
            continue
        link = pending_xref(refdoc=docname, refdomain="std", reftype="doc", refexplicit=False,
                            reftarget=posixpath.relpath(doc, posixpath.dirname(docname)),
                            refwarn=True)
        link += nodes.inline(text=doc)
        when = datetime.fromtimestamp(data["mtime"]).strftime("%Y-%m-%d %H:%M") \
            if data.get("mtime") else ""
        runtime = "" if data.get("runtime") is None else f"{data['runtime']:.1f}"
        if data.get("succeeded"):
            status = nodes.Text(words["ok"])
        else:
            status = nodes.abbreviation(text=words["failed"], explanation=data.get("error") or "")
        row = nodes.row()
        row.extend([_cell(link), _cell(nodes.Text(when)), _cell(nodes.Text(runtime)),
                    _cell(status)])
        body += row
    return table


class LabStatusTable(SphinxPostTransform):
    default_priority = ExecutionStatsPostTransform.default_priority - 1

    def run(self, **kwargs):
        for node in list(self.document.findall(ExecutionStatsNode)):
            node.replace_self(status_table(self.env.docname,
                                           NbMetadataCollector.get_doc_data(self.env),
                                           self.config.language))


def setup(app):
    app.setup_extension("myst_nb")
    app.add_post_transform(LabStatusTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
