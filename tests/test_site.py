"""The built site, page by page, in headless Chromium.

Run by `make site` (part of `make test`) on the site `make book` built; SITE points at its HTML.
Each English page, and a few Chinese ones, loads once in the browser, and every
in-browser check of that page runs on that load; the other Chinese pages are checked
against their English twins without a browser (ZH_IN_BROWSER). With SCREENSHOTS=1
(`make site SCREENSHOTS=1`), a full-page screenshot of every English page goes to
_build/screenshots/ (for a reviewer's eye: about 2 s a page, so off by default).
"""
import functools
import http.server
import os
import re
import shutil
import sys
import threading
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import i18n  # noqa: E402  (tools/i18n.py: the TeX tokens both checks compare)
SITE = (ROOT / os.environ.get("SITE", "_build/default/_build/html")).resolve()
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
        self.ids, self.links, self.icons, self.switch = set(), [], [], []
        self.pasted, self.images, self.lang, self._in_pasted = [], [], None, False
        self.alts, self.assets = [], []  # (src, alt) of every image; files the page loads

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.lang = attrs.get("lang")
        classes = (attrs.get("class") or "").split()
        if tag == "a" and "language-switch" in classes:
            self.switch.append(attrs.get("href"))
        if tag == "span" and "pasted-text" in classes:
            self._in_pasted = True
            self.pasted.append("")
        if tag == "img":
            self.images.append(attrs.get("src"))
            self.alts.append((attrs.get("src"), attrs.get("alt") or ""))
        loads = tag in ("script", "img") and attrs.get("src") or tag == "link" and \
            attrs.get("href") and attrs.get("rel") in ("stylesheet", "preload")
        if loads:
            self.assets.append(attrs.get("src") or attrs.get("href"))
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "link" and "icon" in (attrs.get("rel") or "").split() and attrs.get("href"):
            self.icons.append(attrs["href"])

    def handle_data(self, data):
        if self._in_pasted:
            self.pasted[-1] += data

    def handle_endtag(self, tag):
        if tag == "span":
            self._in_pasted = False


@functools.lru_cache(maxsize=None)
def parse(page):
    parser = Anchors()
    parser.feed((SITE / page).read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def server():
    if not PAGES:
        pytest.fail(f"no built site at {SITE}: run `make book` first")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # a page closed while a file was still being sent: the browser's doing, not
            # the site's (a real failure shows as a failed request in test_page_in_browser)
            if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                super().handle_error(request, client_address)

    handler = functools.partial(Quiet, directory=str(SITE))
    httpd = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


EN_PAGES = [p for p in PAGES if not p.startswith("zh/")]
NUMBER = re.compile(r"[-+−]?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+−]?\d+)?%?")
ZH_PAGES = [p for p in PAGES if p.startswith("zh/")]
# checked in the browser on their one load (test_page_in_browser)
FIGURE_PAGES = [p for p in PAGES if p.startswith(("chapters/", "labs/"))]
MATH = re.compile(r'<(span|div) class="math[^"]*"[^>]*>(.*?)</\1>', re.S)


@functools.lru_cache(maxsize=None)
def math_spans(page):
    """The TeX of every formula on the page, inline and display, as the page has it."""
    return [m.group(2) for m in MATH.finditer((SITE / page).read_text(encoding="utf-8"))]


# In the browser: every English page and some Chinese ones: the redirect, a page of
# prose, a chapter with many equations, a lab, and every page whose equations hold
# Chinese words (\text{...}, which the English pages do not typeset). The other Chinese
# pages are English ones with their paragraphs swapped for translations, on the same
# theme and scripts (their own copies in zh/, which the Chinese pages in the browser
# load): they are checked against their English twins without a browser (the same
# equations, figure files and glued numbers; every file they load present; alt text on
# every image), which takes about 40 page loads (about 45 s of 2 cores) off `make test`.
ZH_SAMPLE = ["zh/index.html", "zh/intro.html", "zh/chapters/20_adversarial.html",
             "zh/labs/14_noise.html"]
ZH_IN_BROWSER = ZH_SAMPLE + [p for p in ZH_PAGES if p not in ZH_SAMPLE and any(
    re.search("[\u4e00-\u9fff]", tex) for tex in math_spans(p))]
BROWSER_PAGES = [p for p in PAGES if not p.startswith("zh/") or p in ZH_IN_BROWSER]
LAB_PAGES = [p for p in PAGES if p.startswith("labs/")]


def test_site_has_every_chapter_and_lab():
    chapters = {p.stem for p in (ROOT / "chapters").glob("*.md")}
    for stem in chapters:
        assert f"chapters/{stem}.html" in PAGES and f"labs/{stem}.html" in PAGES


def test_chinese_edition_has_every_page():
    assert ZH_PAGES, "no Chinese edition in the site (make book builds it into zh/)"
    assert sorted(p[3:] for p in ZH_PAGES) == EN_PAGES


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
        if page in ("index.html", "zh/index.html"):
            assert href.startswith("data:"), f"index.html: icon {href} is a request the redirect aborts"
            continue
        assert ((SITE / page).parent / href).resolve().is_file(), f"{page}: icon {href} missing"


def has_alt_text(alt):
    """Alt text that says something: not empty, not a file name."""
    return bool(alt.strip()) and not re.search(r"\.(png|jpe?g|svg|gif)$", alt.strip())


def main_html(page):
    """The page's <main> element as HTML ("" if it has none: the redirect)."""
    found = re.search(r"<main.*?</main>", (SITE / page).read_text(encoding="utf-8"), re.S)
    return found.group(0) if found else ""


@pytest.mark.parametrize("page", BROWSER_PAGES)
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
        assert has_alt_text(img["alt"]), \
            f"{page}: image {img['src']} has no alt text (alt={img['alt']!r})"
    empty_figures = tab.evaluate(
        "[...document.querySelectorAll('figure')].filter(f => !f.querySelector('img')).length")
    assert empty_figures == 0, f"{page}: {empty_figures} figure(s) without an image"
    assert "??" not in tab.inner_text("main") if tab.query_selector("main") else True
    if page in FIGURE_PAGES:
        check_figures_sharp_and_not_shrunk(tab, page)
    if page in LAB_PAGES:
        check_lab_code_does_not_scroll_sideways(tab, page)
    if os.environ.get("SCREENSHOTS") == "1" and not page.startswith("zh/"):
        SHOTS.mkdir(parents=True, exist_ok=True)  # the Chinese pages have the same layout
        tab.screenshot(path=str(SHOTS / (page.replace("/", "__")[:-5] + ".png")),
                       full_page=True)
    ctx.close()
    assert not problems, f"{page}: " + "; ".join(problems)


@pytest.mark.parametrize("term,expected", [
    ("overfitting", "chapters/01_overfitting.html"),
    # the Chinese edition's search (jieba, with the course's terms in its dictionary)
    ("过拟合", "zh/chapters/01_overfitting.html"),
    ("暂退法", "zh/chapters/06_dropout.html"),
    ("正则化", "zh/chapters/04_weight_decay.html")])
def test_search_finds_pages(term, expected, server, browser):
    tab = browser.new_page()
    edition = "zh/" if expected.startswith("zh/") else ""
    tab.goto(f"{server}/{edition}search.html?q={term}")
    tab.wait_for_selector("#search-results ul.search li", timeout=20000)
    hits = tab.eval_on_selector_all("#search-results ul.search li a", "as => as.map(a => a.href)")
    assert any(expected in h for h in hits), hits
    tab.close()


@pytest.mark.parametrize("page", [p for p in EN_PAGES if p != "index.html"])
def test_language_switch_links_the_same_page(page):
    """Every page links its counterpart in the other edition, and the two say so."""
    (switch,) = parse(page).switch
    other = ((SITE / page).parent / switch).resolve().relative_to(SITE).as_posix()
    assert other == f"zh/{page}", f"{page}: the switch goes to {other}"
    (back,) = parse(other).switch
    assert ((SITE / other).parent / back).resolve() == (SITE / page).resolve(), \
        f"{other}: the switch goes to {back}"
    assert parse(page).lang == "en" and parse(other).lang == "zh-CN"


@pytest.mark.parametrize("page", [p for p in EN_PAGES if p.startswith(("chapters/", "labs/"))])
def test_chinese_page_glues_the_same_numbers_and_figures(page):
    """The Chinese page shows the same executed lab: a chapter the same glued numbers
    (a translation may reorder them within a paragraph), a chapter or lab the same
    figure files, and its title in Chinese."""
    en, zh = parse(page), parse(f"zh/{page}")
    figures = lambda p: Counter(s for s in p.images if "_images/" in s or "jupyter_execute" in s)  # noqa: E731
    assert figures(zh) == figures(en), page
    html = (SITE / "zh" / page).read_text(encoding="utf-8")
    assert re.search("[\u4e00-\u9fff]", article_title(html)), f"zh/{page}: title not in Chinese"
    if page.startswith("labs/"):
        return  # a lab glues numbers for its chapter and shows its own outputs
    # the numbers in each glued text (a phrase the lab glues in both languages, as
    # KEY and KEY_zh, holds the same numbers in other words)
    numbers = lambda p: Counter(n for text in p.pasted for n in NUMBER.findall(text))  # noqa: E731
    assert numbers(en), f"{page}: no glued numbers"
    assert numbers(zh) == numbers(en), \
        f"{page}: only in English {numbers(en) - numbers(zh)}, " \
        f"only in Chinese {numbers(zh) - numbers(en)}"


def equations(page):
    """The page's formulas, inline and display, as TeX tokens without their words
    (\\text{...}, which a translation translates and may add): the same tokens are the
    same formula whatever the line breaks (tools/i18n.py)."""
    return [" ".join(i18n.tex_tokens(tex)) for tex in math_spans(page)]


def test_the_chinese_browser_sample_is_in_the_site():
    if ZH_PAGES:
        assert set(ZH_SAMPLE) <= set(ZH_PAGES), set(ZH_SAMPLE) - set(ZH_PAGES)


@pytest.mark.parametrize("page", [p for p in EN_PAGES if equations(p)])
def test_chinese_page_has_the_english_equations(page):
    """Every equation of the English page, in the Chinese one (in any order: a
    translation may reorder a sentence's symbols). Sphinx's translation of a display
    equation under MyST had written "::" in place of every one (_ext/zh_edition.py)."""
    en, zh = Counter(equations(page)), Counter(equations(f"zh/{page}"))
    assert zh == en, f"zh/{page}: only in English {list((en - zh).elements())[:3]}, " \
                     f"only in Chinese {list((zh - en).elements())[:3]}"


# what may spell words in a formula: \text{...} and its kin, environments, control
# words, HTML entities (&amp; of an aligned equation)
WORDS = re.compile(r"\\(?:text|mathrm|operatorname|mathbf|textbf|mbox|begin|end)\{[^{}]*\}"
                   r"|\\[A-Za-z]+|&[a-z]+;")


@pytest.mark.parametrize("page", PAGES)
def test_every_dollar_became_math(page):
    """Math delimiters paired as the author meant: no "$" left in the text outside code
    and math, no empty formula, no formula of English words. A display equation
    written inside a paragraph of chapter 11 left its dollars unpaired in both
    editions: the prose after it rendered as math, which MathJax typeset without an
    error (an odd count leaves a $ behind; an even one, empty formulas and prose)."""
    body = re.sub(r"<(pre|code|script|style)\b.*?</\1>", "", main_html(page), flags=re.S)
    text = MATH.sub("", body)
    at = text.find("$")
    assert at < 0, f"{page}: an unpaired math delimiter: {text[max(0, at - 80):at + 40]!r}"
    for m in MATH.finditer(body):
        tex = m.group(2).strip()
        inner = re.sub(r"^\\[(\[]|\\[)\]]$", "", tex).strip()
        assert inner, f"{page}: an empty formula: {tex!r}"
        words = re.findall(r"(?<![A-Za-z])[A-Za-z]{3,}", WORDS.sub(" ", inner))
        assert len(words) < 3, f"{page}: a formula of words, prose set as math? {tex[:80]!r}"


@pytest.mark.parametrize("page", [p for p in ZH_PAGES if p not in ZH_IN_BROWSER])
def test_chinese_page_without_a_browser(page):
    """What the browser checks on a page, for the Chinese pages it does not load:
    every script, stylesheet and image the page loads is in the site, every image
    has alt text, every figure an image, and no reference is left unresolved (??)."""
    parsed = parse(page)
    for src in parsed.assets:
        if urlsplit(src).scheme or src.startswith("//"):
            continue
        target = ((SITE / page).parent / unquote(urlsplit(src).path)).resolve()
        assert target.is_file(), f"{page}: {src} is not in the site"
    for src, alt in parsed.alts:
        assert has_alt_text(alt), f"{page}: image {src} has no alt text (alt={alt!r})"
    main = main_html(page)
    assert main, f"{page}: no <main>"
    figures = re.findall(r"<figure.*?</figure>", main, re.S)
    assert all("<img" in f for f in figures), f"{page}: a figure without an image"
    assert "??" not in re.sub(r"<[^>]+>", "", main), f"{page}: an unresolved reference (??)"


def test_language_switch_in_browser(server, browser):
    tab = browser.new_page()
    tab.goto(f"{server}/chapters/06_dropout.html", wait_until="load")
    tab.locator("a.language-switch").click()
    tab.wait_for_url("**/zh/chapters/06_dropout.html", timeout=10000)
    assert "暂退法" in tab.locator("article h1").first.inner_text()
    tab.locator("a.language-switch").click()
    tab.wait_for_url(re.compile(r".*/(?<!zh/)chapters/06_dropout\.html$"), timeout=10000)
    tab.close()


CHAPTER_PAGES = [p for p in PAGES if p.startswith(("chapters/", "zh/chapters/"))]


def test_phone_menu_opens_and_follows_a_link(server, browser):
    # pydata-sphinx-theme 0.17 with sphinx-book-theme 1.3 rendered a second, hidden
    # menu button and bound the drawer to it: the visible one only showed a tooltip.
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                              has_touch=True, device_scale_factor=3)
    tab = ctx.new_page()
    tab.goto(f"{server}/intro.html", wait_until="load")
    toggles = [t for t in tab.query_selector_all(".primary-toggle") if t.is_visible()]
    assert len(toggles) == 1, f"{len(toggles)} visible menu buttons"
    drawer = tab.locator("#pst-primary-sidebar-modal")
    assert not drawer.is_visible()
    toggles[0].tap()
    drawer.wait_for(state="visible", timeout=5000)
    assert tab.evaluate("document.querySelector('#pst-primary-sidebar-modal').open")
    box = drawer.bounding_box()
    assert box and box["width"] > 200 and box["x"] < 390, box
    link = drawer.locator('a[href="chapters/06_dropout.html"]')
    assert link.count() == 1, "the drawer has no link to chapter 6"
    link.tap()
    tab.wait_for_url("**/chapters/06_dropout.html", timeout=10000)
    assert "Dropout" in tab.locator("h1").first.inner_text()
    ctx.close()


def test_desktop_menu_button_hides_the_sidebar(server, browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = ctx.new_page()
    tab.goto(f"{server}/chapters/01_overfitting.html", wait_until="load")
    sidebar = tab.locator("#pst-primary-sidebar")
    assert sidebar.is_visible()
    toggles = [t for t in tab.query_selector_all(".primary-toggle") if t.is_visible()]
    assert len(toggles) == 1, f"{len(toggles)} visible menu buttons"
    toggles[0].click()
    tab.wait_for_function(
        "() => document.querySelector('#pst-primary-sidebar').classList"
        ".contains('pst-sidebar-hidden')", timeout=5000)
    assert not tab.evaluate("document.querySelector('#pst-primary-sidebar-modal').open")
    ctx.close()


def check_figures_sharp_and_not_shrunk(tab, page):
    """On a 1280 px desktop every figure shows at >= 80% of its design width, sharply.

    The design width is the image's width in CSS px as the browser takes it from the
    file: for an SVG the width of its root element (matplotlib writes points, 1 pt =
    4/3 CSS px), which is what naturalWidth reports; for a PNG its width attribute
    if it has one, else its pixel width. Sharp means an SVG, or a PNG with at least
    1.5 image pixels per CSS px of its design width (150 dpi and more).
    """
    images = tab.evaluate("""[...document.querySelectorAll('main article img')].map(i => ({
        src: i.getAttribute('src'), natural: i.naturalWidth,
        attr: parseFloat(i.getAttribute('width')) || null,
        shown: i.getBoundingClientRect().width}))""")
    for img in images:
        svg = img["src"].lower().endswith(".svg")
        design = img["natural"] if svg or not img["attr"] else img["attr"]
        assert design > 0, f"{page}: {img['src']} has no width"
        assert img["shown"] >= 0.8 * design, \
            f"{page}: {img['src']} shown {img['shown']:.0f} px of its {design:.0f} px"
        assert svg or img["natural"] >= 1.5 * design, \
            f"{page}: {img['src']} is a {img['natural']} px bitmap shown {design:.0f} px wide"


def article_title(html):
    """The page's title as the article shows it (the theme's print-only copy comes first)."""
    h1 = re.search(r"<article.*?<h1[^>]*>(.*?)</h1>", html, re.S).group(1)
    return re.sub(r"<[^>]+>", "", h1).replace("#", "").strip()


@pytest.mark.parametrize("page", CHAPTER_PAGES)
def test_chapter_numbers_and_figure_numbers(page):
    """Chapter N's title reads "N. Title" once, and its figures are Fig. N.1, N.2, ...
    (in the Chinese edition 图 N.1, N.2, ...)"""
    number = int(re.match(r"(?:zh/)?chapters/(\d+)_", page).group(1))
    html = (SITE / page).read_text(encoding="utf-8")
    title = "[^\u4e00-\u9fff]*[\u4e00-\u9fff]" if page.startswith("zh/") else "[A-Z]"
    assert re.match(rf"{number}\. {title}", article_title(html)), \
        f"{page}: title {article_title(html)!r}"
    figures = re.findall(r'<span class="caption-number">(?:Fig\.|图) ?([\d.]+) </span>', html)
    assert figures, f"{page}: no numbered figure"
    assert figures == [f"{number}.{k}" for k in range(1, len(figures) + 1)], figures


def test_lab_titles_have_no_section_number():
    for page in (p for p in PAGES if p.startswith("labs/")):
        html = (SITE / page).read_text(encoding="utf-8")
        assert article_title(html).startswith("Lab "), f"{page}: {article_title(html)!r}"


@pytest.mark.parametrize("edition,words", [
    ("", (["Lab", "Last run", "Run time (s)", "Status"], "Lab ", "ok")),
    ("zh/", (["实验", "最近一次运行", "运行时间（秒）", "状态"], "实验 ", "通过"))])
def test_status_page_in_words(edition, words, server, browser):
    tab = browser.new_page()
    tab.goto(f"{server}/{edition}status.html", wait_until="load")
    headers = tab.eval_on_selector_all("main table th", "ths => ths.map(t => t.innerText.trim())")
    rows = tab.eval_on_selector_all("main table tbody tr", """trs => trs.map(tr =>
        [...tr.querySelectorAll('td')].map(td => td.innerText.trim()))""")
    links = tab.eval_on_selector_all("main table tbody tr a", "as => as.map(a => a.href)")
    text = tab.inner_text("main")
    tab.close()
    assert headers == words[0], headers
    labs = sorted(p.name for p in (ROOT / "labs").glob("*.ipynb"))
    assert len(rows) == len(labs) == len(links), rows
    assert all(row[0].startswith(words[1]) and row[-1] == words[2] for row in rows), rows
    assert not re.search("[\u2705\u274c]", text), "emoji in the status page"


def check_lab_code_does_not_scroll_sideways(tab, page):
    # code (lines of at most 88 characters) and printed output (wrapped by labs.css)
    blocks = tab.evaluate("""[...document.querySelectorAll('.cell_input pre, .cell_output pre')]
        .map(p => ({first: p.innerText.split('\\n')[0], scroll: p.scrollWidth,
                    width: p.clientWidth}))""")
    assert blocks, f"{page}: no code cells"
    wide = [b for b in blocks if b["scroll"] > b["width"]]
    assert not wide, f"{page}: code or output scrolls sideways: {wide}"
