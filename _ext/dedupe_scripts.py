"""Drop script tags that the page would include twice.

Jupyter Book 1 registers sphinx-thebe's and sphinx-togglebutton's inline
scripts twice (once with filename None, once with ''), so every page declares
``const THEBE_JS_URL`` twice and the browser reports a SyntaxError. Keeping the first of identical scripts fixes that and nothing else.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        key = (getattr(script, "filename", script) or "", getattr(script, "attributes", {}).get("body", ""))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
