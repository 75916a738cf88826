"""The built site, page by page, in headless Chromium.

Run by `make site` after `make book PROFILE=ci`; SITE points at the HTML.
Screenshots of every page go to _build/screenshots/.
"""
import functools
import http.server
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = (ROOT / os.environ.get("SITE", "_build/ci/_build/html")).resolve()
SHOTS = ROOT / "_build" / "screenshots"
PAGES = sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")
               if "_static" not in p.parts and "_sources" not in p.parts) if SITE.is_dir() else []


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("no chromium on PATH: `make chromium` installs Debian's package")


class Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links, self.icons = set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "link" and "icon" in (attrs.get("rel") or "").split() and attrs.get("href"):
            self.icons.append(attrs["href"])


@functools.lru_cache(maxsize=None)
def parse(page):
    parser = Anchors()
    parser.feed((SITE / page).read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def server():
    if not PAGES:
        pytest.fail(f"no built site at {SITE}: run `make book PROFILE=ci` first")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    shutil.rmtree(SHOTS, ignore_errors=True)  # no screenshots of pages that no longer exist
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def test_site_has_every_chapter_and_lab():
    chapters = {p.stem for p in (ROOT / "chapters").glob("*.md")}
    for stem in chapters:
        assert f"chapters/{stem}.html" in PAGES and f"labs/{stem}.html" in PAGES


@pytest.mark.parametrize("page", PAGES)
def test_internal_links_resolve(page):
    for href in parse(page).links:
        parts = urlsplit(href)
        if parts.scheme or href.startswith(("mailto:", "//")):
            continue
        target = (SITE / page).parent / unquote(parts.path) if parts.path else SITE / page
        target = target.resolve()
        assert target.exists(), f"{page}: broken link {href}"
        if parts.fragment and target.suffix == ".html":
            ids = parse(target.relative_to(SITE).as_posix()).ids
            assert unquote(parts.fragment) in ids, f"{page}: link {href} has no target #{parts.fragment}"


@pytest.mark.parametrize("page", PAGES)
def test_page_names_its_icon(page):
    # Without <link rel="icon"> a browser asks for /favicon.ico, which the site
    # lacks: a 404 in the console (on index.html it raced the redirect in CI).
    # The redirect page names an inline icon (data:), so it loads nothing.
    icons = parse(page).icons
    assert icons, f"{page}: no <link rel=\"icon\">"
    for href in icons:
        if page == "index.html":
            assert href.startswith("data:"), f"index.html: icon {href} is a request the redirect aborts"
            continue
        assert ((SITE / page).parent / href).resolve().is_file(), f"{page}: icon {href} missing"


@pytest.mark.parametrize("page", PAGES)
def test_page_in_browser(page, server, browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = ctx.new_page()
    problems = []
    tab.on("console", lambda m: m.type == "error" and problems.append(
        f"console: {m.text} ({m.location.get('url', '?')})"))
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    refresh = re.search(r'http-equiv="refresh" content="\d+; ?url=([^"]+)"',
                        (SITE / page).read_text(encoding="utf-8"), re.IGNORECASE)
    if refresh:  # index.html only forwards to the first page
        tab.goto(f"{server}/{page}")
        tab.wait_for_url(f"**/{refresh.group(1)}")
        ctx.close()
        assert not problems, f"{page}: " + "; ".join(problems)
        return
    tab.goto(f"{server}/{page}", wait_until="load")
    has_math = tab.evaluate("document.querySelectorAll('span.math, div.math').length")
    if has_math:
        tab.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        tab.evaluate("() => MathJax.startup.promise")
        rendered = tab.evaluate("document.querySelectorAll('mjx-container').length")
        errors = tab.evaluate("document.querySelectorAll('mjx-merror').length")
        assert rendered >= has_math and errors == 0, f"{page}: {rendered}/{has_math} formulas rendered"
    images = tab.evaluate("""[...document.querySelectorAll('main img, article img')].map(i => ({
        src: i.getAttribute('src'), alt: i.getAttribute('alt') || '',
        ok: i.complete && i.naturalWidth > 0}))""")
    for img in images:
        assert img["ok"], f"{page}: image {img['src']} did not load"
        alt = img["alt"].strip()
        assert alt and not re.search(r"\.(png|jpe?g|svg|gif)$", alt), \
            f"{page}: image {img['src']} has no alt text (alt={alt!r})"
    empty_figures = tab.evaluate(
        "[...document.querySelectorAll('figure')].filter(f => !f.querySelector('img')).length")
    assert empty_figures == 0, f"{page}: {empty_figures} figure(s) without an image"
    assert "??" not in tab.inner_text("main") if tab.query_selector("main") else True
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / (page.replace("/", "__")[:-5] + ".png")), full_page=True)
    ctx.close()
    assert not problems, f"{page}: " + "; ".join(problems)


@pytest.mark.parametrize("term,expected", [("overfitting", "chapters/01_overfitting.html")])
def test_search_finds_pages(term, expected, server, browser):
    tab = browser.new_page()
    tab.goto(f"{server}/search.html?q={term}")
    tab.wait_for_selector("#search-results ul.search li", timeout=20000)
    hits = tab.eval_on_selector_all("#search-results ul.search li a", "as => as.map(a => a.href)")
    assert any(expected in h for h in hits), hits
    tab.close()
