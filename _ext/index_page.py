"""Write the site's index.html: a redirect to the first page that loads nothing.

sphinx-external-toc writes index.html as a bare ``<meta http-equiv="Refresh">``
line. A page with no ``<link rel="icon">`` makes the browser ask for
/favicon.ico, which the site does not have: a 404 in the console whenever that
request wins the race against the redirect (seen in CI). Naming the real icon
only moves the race: its request is aborted by the redirect (net::ERR_ABORTED,
15 times in 25 loads here). So the redirect page names an empty inline icon,
``data:,``, and requests nothing at all. This handler runs first and writes a
complete page (title, icon, a link for browsers that ignore the refresh);
sphinx-external-toc then finds index.html present and leaves it alone.
"""
import html
from pathlib import Path


def _write_index(app, exception):
    if exception is not None or app.builder.format != "html" or app.config.root_doc == "index":
        return
    target = app.builder.get_target_uri(app.config.root_doc)
    title = html.escape(app.config.html_title or app.config.project)
    lang = (app.config.language or "en").replace("_", "-")
    Path(app.outdir, "index.html").write_text(
        f"<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<title>{title}</title>\n<link rel="icon" href="data:,">\n'
        f'<meta http-equiv="Refresh" content="0; url={target}">\n</head>\n'
        f'<body><p><a href="{target}">{title}</a></p></body>\n</html>\n',
        encoding="utf-8")


def setup(app):
    app.connect("build-finished", _write_index, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
