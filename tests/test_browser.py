r"""The HTML book as a reader sees it: built, served on loopback, opened in headless Chromium.

Pages checked: the preface (the root of ``_toc.yml``), the toolkit chapter and the
first page of every part of ``_toc.yml`` (the Appendix included: its first page,
the notation, is the densest math of the book), read from ``_toc.yml`` so the list
grows with the book.  On each page:

- math is typeset by MathJax from the book's own files (``mjx-container`` in every
  math element, no MathJax error, no raw ``$$``, ``\(``, ``\[`` or ``\begin{`` left
  in the text), and the page made no request off this machine (each one is blocked
  and reported);
- every image loads (``naturalWidth > 0``);
- a chapter built from a notebook has a Colab button linking to its ``.ipynb`` on the
  repository and branch of ``_config.yml``; a Markdown page has none;
- no raw MyST text (``:::``, ``{exercise}``, ``{prf:``, ``{cite}``...) is left anywhere
  in the article, hidden parts included;
- solutions are collapsed (``{solution}`` admonitions need ``:class: dropdown``; code
  cells tagged ``solution`` need ``hide-cell`` too: code and output, as the output
  gives the answer away), labelled "Show solution" (answers in prose: "Show answer"),
  and open on a click; the setup cell is collapsed under "Show setup code";
- no nbgrader marker (``BEGIN SOLUTION``, ``BEGIN HIDDEN TESTS``...) and no hidden test
  anywhere in the text (checked on every built page, statically, too);
- every figure has an alt text that says what it shows (not a file name), is a high-DPI
  PNG (at least two pixels per CSS pixel), keeps its aspect ratio, opens full size on a
  click, and its smallest font shows at 9 pt (12 px) or more, on the desktop and on a
  400 px wide phone screen (font-size proxy: the style's smallest font in PNG pixels,
  from the PNG's DPI, times rendered width / natural width);
- printed output fits the desktop column (no horizontal scroll bar in an output);
- citations are links to the bibliography (no ``{cite}`` link left), with the words of
  the bibliography's author-year labels;
- one search box (the sidebar's) on the desktop; an issue button for the page; the
  footer states the licence of text and figures; no JavaScript error at all;
- a header button "Download the book (PDF)" links to the book's PDF at the root of the
  HTML book; where that file is in the served folder (the HTML build copies it from
  ``_build/latex/`` when the PDF was built first), it is served as a PDF.  With
  ``OPTLAB_BOOK_PDF`` set (``.ci/run``), it must be there.

On a 400 px phone screen the same pages have no horizontal page scroll, a search
control, readable figures and no JavaScript error.  The bibliography has one style
(author-year labels, each link once, no "2 edition"), and the API reference links
every chapter that its docstrings name (``Book: chapters/...``).

Besides: the search page finds each part's first chapter by its method's name (its
slug, ``last_iterate`` -> "last iterate"), the search box of the preface leads there,
and in the dark theme every figure of the first chapter with figures keeps an opaque
white background and stays readable.

Screenshots go to ``_build/screenshots/`` for review: every checked page on the desktop
(``<page>.png``) and on a 400 px phone screen (``<page>__phone.png``).

The book is built once per session with ``jupyter-book build`` into a temporary
folder.  Set ``OPTLAB_BOOK_HTML=_build/html`` to check an existing build instead
(``.ci/run`` does, right after its own ``jupyter-book build -W``); a page older than
its source fails as stale.  The browser is Debian's Chromium (``/usr/bin/chromium``,
or the path in ``CHROMIUM``), driven by the ``playwright`` package; where either is
missing the tests are skipped locally, and fail when ``CI`` is set.
"""
from __future__ import annotations

import base64
import functools
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest
import yaml

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import _book  # noqa: E402
import book_pdf  # noqa: E402  (the PDF's name and its header button)

SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 900}
PHONE = {"width": 400, "height": 860}
MIN_FONT_PX = 12.0  # 9 pt: the smallest text a figure may show, at the size the page shows it
MAX_SHOT_HEIGHT = 8000  # px: full-page screenshots are cut there to keep _build/screenshots small
TIMEOUT_MS = 30_000
IDLE_MS = 10_000  # the best-effort wait for a quiet network before the page's own readiness (Tab.settle)
# A page is ready when MathJax's first typeset is done, the fonts are loaded and every image that is not
# lazily loaded has loaded or failed.
READY_JS = """() => {
  const typeset = window.MathJax && MathJax.startup && MathJax.startup.promise;
  if (typeset && !window.__optlabHooked) {
    window.__optlabHooked = true;
    typeset.then(() => { window.__optlabTypeset = true; });
  }
  return (!typeset || window.__optlabTypeset === true) && document.fonts.status === 'loaded'
    && Array.from(document.images).every(i => i.complete || i.loading === 'lazy');
}"""
# JavaScript errors tolerated on a page: none.  (Jupyter Book 1 used to write sphinx-thebe's inline
# `const THEBE_JS_URL` twice into every page; _config.yml leaves sphinx_thebe out, see there.)
KNOWN_JS_ERRORS: list[str] = []
GRADING_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")

# Raw text that means MyST (or a role/directive) was not parsed: never in a rendered page.
RAW_MYST = [":::", "```{", "{exercise}", "{solution", "{prf:", "{cite}", "{cite:", "{eval-rst}",
            "{bibliography}", "{math}", "{ref}", "{numref}", "{doc}", "{eq}", "{code-cell}", "{glue"]
# Raw TeX outside code: math that MathJax did not typeset.
RAW_MATH = ["$$", "\\(", "\\)", "\\[", "\\]", "\\begin{"]
RAW_RST = re.compile(r"(?:^|\n)\s*\.\. [a-z][\w:-]*::")  # e.g. an autodoc directive written in MyST
RAW_INLINE_MATH = re.compile(r"\$[^$\n]{0,200}?\\[A-Za-z]+[^$\n]{0,200}?\$")


# --------------------------------------------------------------------------- the book's facts

def _toc() -> dict:
    return yaml.safe_load((ROOT / "_toc.yml").read_text())


def _first_file(entries):
    for entry in entries or []:
        if "file" in entry:
            return entry["file"]
        found = _first_file(entry.get("sections")) or _first_file(entry.get("chapters"))
        if found:
            return found
    return None


def _files(entries):
    """Every file of a list of toc entries, sections included, in order."""
    for entry in entries or []:
        if "file" in entry:
            yield entry["file"]
        yield from _files(entry.get("sections"))
        yield from _files(entry.get("chapters"))


def _strip_suffix(file: str) -> str:
    return re.sub(r"\.(md|ipynb)$", "", file)


def pages_to_check() -> list[str]:
    """Preface, toolkit chapter and every part's first page, in book order (no suffix)."""
    toc = _toc()
    pages = [toc["root"], "chapters/toolkit"]
    pages += [_first_file(part.get("chapters")) for part in toc.get("parts", [])]
    pages += [_first_file(toc.get("chapters"))]
    out = []
    for page in pages:
        if page and _strip_suffix(page) not in out:
            out.append(_strip_suffix(page))
    return out


def method_chapters() -> list[str]:
    """The first chapter of each part that teaches a method: not the toolkit, not a Markdown page
    (a part's opening page, the Appendix).  A chapter named in ``_toc.yml`` but missing stays in the
    list, and fails."""
    toc = _toc()
    out = []
    for part in toc.get("parts", []):
        files = [_strip_suffix(f) for f in _files(part.get("chapters"))]
        first = next((f for f in files if f != "chapters/toolkit" and not (ROOT / f"{f}.md").exists()), None)
        if first:
            out.append(first)
    return out


def source_of(page: str) -> Path | None:
    for suffix in (".ipynb", ".md"):
        if (ROOT / f"{page}{suffix}").exists():
            return ROOT / f"{page}{suffix}"
    return None


def page_has_math_source(page: str) -> bool:
    """Whether a page's source has math (dollar signs or a math directive), so MathJax must load."""
    src = source_of(page)
    if src is None:
        return True
    text = src.read_text()
    return "$" in text or "{math}" in text


def repo_url() -> str:
    return _book.config()["repository"]["url"].rstrip("/")


def colab_href(page: str) -> str:
    """The Colab link sphinx-book-theme should build for a notebook page, from ``_config.yml``."""
    cfg = _book.config()
    repo = cfg["repository"]
    owner_name = urlsplit(repo["url"]).path.strip("/").removesuffix(".git")
    book = (repo.get("path_to_book") or "").strip("/")
    path = f"{book}/{page}.ipynb" if book else f"{page}.ipynb"
    colab = cfg.get("launch_buttons", {}).get("colab_url", "https://colab.research.google.com").rstrip("/")
    return f"{colab}/github/{owner_name}/blob/{repo.get('branch', 'main')}/{path}"


def shot_name(page: str) -> str:
    return page.replace("/", "__")


# --------------------------------------------------------------------------- environment

def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(why: str):
    if _in_ci():
        pytest.fail(f"{why} (CI is set: the browser tests must run in CI; .ci/run installs chromium)",
                    pytrace=False)
    pytest.skip(why)


def _executable(path) -> bool:
    return bool(path) and Path(path).is_file() and os.access(path, os.X_OK)


def find_chromium() -> str | None:
    """``$CHROMIUM`` when set (and only it), else Debian's ``/usr/bin/chromium`` or ``chromium`` on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"] if _executable(os.environ["CHROMIUM"]) else None
    return next((c for c in ("/usr/bin/chromium", shutil.which("chromium")) if _executable(c)), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        where = f"CHROMIUM={os.environ['CHROMIUM']} is not an executable" if os.environ.get("CHROMIUM") \
            else "no Chromium found (/usr/bin/chromium, chromium on PATH)"
        _unavailable(f"{where}: install Debian's chromium (apt-get install chromium), "
                     "or set CHROMIUM=/path/to/chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the Python package playwright is missing (pip install -r requirements.txt); "
                     "it drives Debian's chromium, never run `playwright install`")
    return path


def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    pytest.fail("jupyter-book is not installed (pip install -r requirements.txt)", pytrace=False)


def _check_fresh(html: Path) -> None:
    stale = []
    for page in pages_to_check():
        built, src = html / f"{page}.html", source_of(page)
        if not built.exists():
            stale.append(f"{built} is missing")
        elif src is not None and src.stat().st_mtime > built.stat().st_mtime + 1:
            stale.append(f"{built.name} is older than {src.relative_to(ROOT)}")
    if stale:
        pytest.fail(f"OPTLAB_BOOK_HTML={html} is not a fresh build of this tree: " + "; ".join(stale)
                    + ". Rebuild it (jupyter-book build .) or unset OPTLAB_BOOK_HTML.", pytrace=False)


@pytest.fixture(scope="session")
def book_html(chromium, built_book) -> Path:
    """The built HTML, for the tests that open it in Chromium."""
    return built_book


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """The built HTML: OPTLAB_BOOK_HTML if set (checked fresh), else a fresh build in a temporary folder."""
    given = os.environ.get("OPTLAB_BOOK_HTML")
    if given:
        html = Path(given)
        html = (html if html.is_absolute() else ROOT / html).resolve()
        _check_fresh(html)
        return html
    out = tmp_path_factory.mktemp("book")
    cmd = _jupyter_book() + ["build", str(ROOT), "--path-output", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    html = out / "_build" / "html"
    if proc.returncode != 0 or not (html / f"{_toc()['root']}.html").exists():
        pytest.fail(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n"
                    f"{(proc.stdout + proc.stderr)[-4000:]}", pytrace=False)
    return html


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the signature of the base class)
        pass


@pytest.fixture(scope="session")
def server(book_html):
    """Base URL of the book served by http.server on 127.0.0.1 (loopback only), on a free port."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(book_html)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
    except Exception as exc:  # a broken install: say so, the same way as a missing one
        pw.stop()
        _unavailable(f"Chromium at {chromium} did not start: {exc}")
    yield b
    b.close()
    pw.stop()


class Tab:
    """One browser page with every request off loopback blocked and recorded."""

    def __init__(self, browser, base: str, html: Path | None = None, viewport=None, scale: float = 1):
        self.base, self.html = base, html
        self.viewport = dict(viewport or VIEWPORT)
        self.offsite: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport=self.viewport, device_scale_factor=scale,
                                           service_workers="block")
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _route(self, route):
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.offsite.append(route.request.url)
            route.abort()

    def open(self, path: str, idle: bool = True):
        """Open a page of the book; ``idle`` waits until the network is quiet (MathJax, images)."""
        response = self.page.goto(f"{self.base}/{path}", wait_until="load")
        if response is None or response.status != 200:
            page = path.split("?")[0].removesuffix(".html")
            src = source_of(page)
            hint = (f"its source {src.relative_to(ROOT)} exists but was not built" if src
                    else f"{page}.ipynb / {page}.md does not exist, yet _toc.yml names it")
            pytest.fail(f"{path}: HTTP {response.status if response else 'no response'} from the built book "
                        f"({hint})", pytrace=False)
        if idle:
            self.settle(path)
        return self.page

    def settle(self, path: str):
        """Wait until the page is drawn as a reader sees it: MathJax has typeset, the fonts and every
        (eager) image have loaded.  Playwright's "networkidle" (500 ms without a request) is only a
        best-effort first wait: on a loaded machine it once never came within the timeout although
        the page was complete, so the readiness checked is the page's own."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_load_state("networkidle", timeout=IDLE_MS)
        except PlaywrightTimeout:
            pass
        try:
            self.page.wait_for_function(READY_JS, timeout=TIMEOUT_MS)
        except PlaywrightTimeout:
            pytest.fail(f"{path}: not ready within {TIMEOUT_MS / 1000:.0f} s (MathJax, fonts or images "
                        "still loading)", pytrace=False)

    def close(self):
        self.context.close()


@pytest.fixture
def tab(browser, server, book_html):
    t = Tab(browser, server, book_html)
    yield t
    t.close()


@pytest.fixture
def phone_tab(browser, server, book_html):
    """A 400 px wide phone screen (two device pixels per CSS pixel, as most phones)."""
    t = Tab(browser, server, book_html, viewport=PHONE, scale=2)
    yield t
    t.close()


def screenshot(page, name: str, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = page.evaluate("document.documentElement.scrollHeight")
    width = page.viewport_size["width"]
    if full_page and height > MAX_SHOT_HEIGHT:
        page.screenshot(path=str(path), full_page=True,
                        clip={"x": 0, "y": 0, "width": width, "height": MAX_SHOT_HEIGHT})
    else:
        page.screenshot(path=str(path), full_page=full_page)
    return path


# --------------------------------------------------------------------------- in-page probes (JS)

WAIT_MATHJAX = """async () => {
  if (!window.MathJax || !window.MathJax.startup) return 'MathJax did not load';
  await window.MathJax.startup.promise;
  return 'ok';
}"""

WAIT_IMAGES = """async () => {
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r, {once: true}); i.addEventListener('error', r, {once: true});
    setTimeout(r, 15000);
  })));
  return imgs.map(i => ({src: i.getAttribute('src'), width: i.naturalWidth, complete: i.complete}));
}"""

PROBE = """() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const textOf = (root, skip) => {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const parts = [];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const p = n.parentElement;
      if (!p || p.closest(skip)) continue;
      parts.push(n.nodeValue);
    }
    return parts.join('');
  };
  const visible = el => el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true});
  const math = [...article.querySelectorAll('.math')];
  const solutions = [...article.querySelectorAll('.solution')].filter(el => el.matches('.admonition, div'));
  const solutionCells = [...article.querySelectorAll('.cell.tag_solution')];
  const issue = [...document.querySelectorAll('a[href*="/issues/new"]')].map(a => a.href);
  const searchInputs = [...document.querySelectorAll('form.bd-search input[name="q"], input[name="q"]')];
  const searchButtons = [...document.querySelectorAll('.search-button__button, .search-button-field, form.bd-search')];
  return {
    title: document.title,
    mathElements: math.length,
    mathUntypeset: math.filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.slice(0, 80)),
    mjx: document.querySelectorAll('mjx-container').length,
    mathErrors: [...document.querySelectorAll('mjx-merror')].map(
        el => el.getAttribute('data-mjx-error') || el.textContent.slice(0, 80)),
    // MathJax shows an undefined macro or a TeX error in red (mathcolor="red") or as <merror>:
    // find them in the MathML of every typeset expression and report its TeX source.
    badTex: (window.MathJax && MathJax.startup && MathJax.startup.document && MathJax.startup.toMML)
        ? [...MathJax.startup.document.math].filter(
            m => m.root && /<merror|mathcolor="red"/.test(MathJax.startup.toMML(m.root))).map(m => m.math)
        : [],
    // Text a reader reads, code and typeset math left out: raw TeX here was never typeset.
    proseText: textOf(document.body, 'pre, code, script, style, textarea, mjx-container, .highlight, .MathJax'),
    // The whole article, hidden parts and code included, for raw MyST.
    articleText: textOf(article, 'script, style, mjx-container'),
    colab: [...document.querySelectorAll('a[href*="colab.research.google.com"]')].map(a => a.href),
    issue,
    searchForms: [...document.querySelectorAll('form.bd-search')].map(f => f.getAttribute('action')),
    searchInputs: searchInputs.length,
    searchVisible: searchButtons.some(visible) || searchInputs.some(visible),
    solutions: solutions.map(el => ({
      id: el.id,
      classes: el.className,
      bodyVisible: [...el.children].filter(c => !c.matches('.admonition-title, button'))
          .some(c => visible(c) && c.textContent.trim().length > 0),
    })),
    solutionCells: solutionCells.map((el, i) => ({
      index: i,
      classes: el.className,
      answer: el.classList.contains('optlab-answer'),
      codeVisible: [...el.querySelectorAll('.cell_input')].some(visible),
      outputVisible: [...el.querySelectorAll('.cell_output')].some(visible),
      contentVisible: [...el.querySelectorAll('details > :not(summary)')].some(visible),
    })),
    // Every collapsed cell (MyST-NB's hidden cells and the book's answers in prose) and its label.
    hiddenCells: [...article.querySelectorAll('.cell')].filter(c => c.querySelector('details.hide')).map(c => {
      const d = c.querySelector('details.hide');
      return {classes: c.className, open: d.open,
              label: (d.querySelector('summary .collapsed') || d.querySelector('summary') || {}).textContent?.trim(),
              contentVisible: [...d.children].filter(k => k.tagName !== 'SUMMARY').some(visible)};
    }),
    searchControls: [...new Set(document.querySelectorAll(
        '.search-button-field, .search-button__button, form.bd-search input[name="q"]'))].filter(visible).length,
    footer: [...document.querySelectorAll('footer')].map(f => f.textContent).join(' '),
    // The text of every notebook cell (code and outputs, collapsed parts included).
    cellText: [...article.querySelectorAll('.cell')].map(c => textOf(c, 'script, style')).join('\\n'),
    pageWidth: document.documentElement.scrollWidth,
    overflowingOutputs: [...article.querySelectorAll('.cell_output pre')].filter(visible)
        .filter(p => p.scrollWidth > p.clientWidth + 1)
        .map(p => p.textContent.split('\\n').reduce((a, l) => l.length > a.length ? l : a, '').slice(0, 100)),
    citeLinksLeft: [...article.querySelectorAll('a[href*="{cite}"], a[href*="%7Bcite%7D"]')]
      .map(a => a.getAttribute('href')),
    citations: [...article.querySelectorAll('.bibtex-citation')].map(span => ({
      text: span.textContent.replace(/\\s+/g, ' ').trim(),
      links: [...span.querySelectorAll('a')].map(a => ({href: a.getAttribute('href'),
                                                        text: a.textContent.replace(/\\s+/g, ' ').trim()})),
    })),
    figures: [...article.querySelectorAll('.cell_output img')].map(img => {
      const r = img.getBoundingClientRect(), a = img.closest('a');
      return {src: img.getAttribute('src'), alt: img.getAttribute('alt'),
              natural: [img.naturalWidth, img.naturalHeight], rendered: [r.width, r.height],
              link: a ? a.getAttribute('href') : null};
    }),
  };
}"""

# The bibliography page's entries: label, text and links.
BIBLIOGRAPHY = """() => [...document.querySelectorAll('div.citation')].map(d => ({
  id: d.id,
  label: (d.querySelector('.label') || {}).textContent?.replace(/[\\[\\]]/g, '').trim(),
  text: d.textContent.replace(/\\s+/g, ' ').trim(),
  hrefs: [...d.querySelectorAll('a[href]')].map(a => a.href),
}))"""

# Decode a PNG (bytes given as base64) in the page and report pixels: corners at an inset, darkest pixel.
PIXELS = """async ([b64, inset]) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + b64;
  await img.decode();
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  const at = (x, y) => { const k = 4 * (y * c.width + x); return [d[k], d[k + 1], d[k + 2], d[k + 3]]; };
  const w = c.width - 1 - inset, h = c.height - 1 - inset;
  let darkest = [255, 255, 255, 255], minSum = 1e9, minAlpha = 255;
  for (let k = 0; k < d.length; k += 4) {
    const s = d[k] + d[k + 1] + d[k + 2];
    if (s < minSum) { minSum = s; darkest = [d[k], d[k + 1], d[k + 2], d[k + 3]]; }
    if (d[k + 3] < minAlpha) minAlpha = d[k + 3];
  }
  return {size: [c.width, c.height], corners: [at(inset, inset), at(w, inset), at(inset, h), at(w, h)],
          darkest, minAlpha};
}"""

# The figure files themselves, read through a canvas (same origin): pixels of the stored PNG.
FIGURE_FILES = """async () => {
  const out = [];
  for (const img of document.querySelectorAll('article .cell_output img')) {
    await img.decode().catch(() => null);
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const at = (x, y) => { const k = 4 * (y * c.width + x); return [d[k], d[k + 1], d[k + 2], d[k + 3]]; };
    let minAlpha = 255;
    for (let k = 3; k < d.length; k += 4) if (d[k] < minAlpha) minAlpha = d[k];
    const s = getComputedStyle(img);
    out.push({src: img.getAttribute('src'), size: [c.width, c.height], minAlpha,
              corners: [at(0, 0), at(c.width - 1, 0), at(0, c.height - 1), at(c.width - 1, c.height - 1)],
              filter: s.filter, opacity: s.opacity, mixBlend: s.mixBlendMode,
              padding: parseFloat(s.paddingTop) + parseFloat(s.borderTopWidth)});
  }
  return out;
}"""


# --------------------------------------------------------------------------- the checks

def _luminance(rgb) -> float:
    def lin(c):
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a, b) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _around(text: str, needle: str, width: int = 60) -> str:
    k = text.find(needle)
    return " ".join(text[max(0, k - width):k + len(needle) + width].split())


def page_problems(tab: Tab, page: str) -> list[str]:
    """Open one page, take its screenshot and return what is wrong with it (empty: nothing)."""
    p = tab.open(f"{page}.html")
    problems = []
    mathjax = p.evaluate(WAIT_MATHJAX)
    images = p.evaluate(WAIT_IMAGES)
    info = p.evaluate(PROBE)
    screenshot(p, shot_name(page))

    # Math, offline.
    # Sphinx loads MathJax only on pages with math; a page without math (a part's opening
    # page, say) needs none, and raw TeX left in its prose is caught below.
    if mathjax != "ok" and (info["mathElements"] or page_has_math_source(page)):
        problems.append(f"MathJax: {mathjax}")
    if info["mathElements"] and not info["mjx"]:
        problems.append(f"{info['mathElements']} math elements but no mjx-container: MathJax typeset nothing")
    if info["mathUntypeset"]:
        problems.append(f"math elements left untypeset: {info['mathUntypeset'][:5]}")
    if info["mathErrors"]:
        problems.append(f"MathJax errors (TeX MathJax cannot parse): {info['mathErrors'][:5]}")
    if info["badTex"]:
        problems.append(f"TeX that MathJax shows in red (undefined macros or errors; use standard MathJax "
                        f"commands only): {info['badTex'][:5]}")
    prose = info["proseText"]
    raw = [s for s in RAW_MATH if s in prose] + RAW_INLINE_MATH.findall(prose)[:3]
    if raw:
        where = [_around(prose, s) for s in raw[:3]]
        problems.append(f"raw TeX in the text (not typeset): {raw[:5]} around {where}")
    if tab.offsite:
        problems.append(f"requests off this machine (blocked; the page must work offline): {tab.offsite[:5]}")

    # Images.
    broken = [i["src"] for i in images if not (i["complete"] and i["width"] > 0)]
    if broken:
        problems.append(f"images that did not load: {broken[:5]}")

    # Colab button.
    src = source_of(page)
    if src is not None and src.suffix == ".ipynb":
        expected = colab_href(page)
        if info["colab"] != [expected]:
            problems.append(f"Colab button: expected one link to {expected}, found {info['colab']}")
    elif info["colab"]:
        problems.append(f"a Markdown page should have no Colab button, found {info['colab']}")

    # Raw MyST.
    text = info["articleText"]
    leftover = [s for s in RAW_MYST if s in text] + [m.strip() for m in RAW_RST.findall(text)[:3]]
    if leftover:
        where = [_around(text, s) for s in leftover[:3]]
        problems.append(f"raw MyST text in the page: {leftover} around {where}")

    # Solutions: collapsed, and a click opens them.
    for sol in info["solutions"]:
        if sol["bodyVisible"]:
            problems.append(f"solution {sol['id']!r} is open (classes {sol['classes']!r}): "
                            "give the {solution} directive the option `:class: dropdown`")
    for cell in info["solutionCells"]:
        shown = [what for what, key in (("code", "codeVisible"), ("output", "outputVisible")) if cell[key]]
        if shown:
            problems.append(f"solution cell #{cell['index'] + 1} shows its {' and '.join(shown)} "
                            f"(classes {cell['classes']!r}): tag the cell `hide-cell` besides `solution` "
                            "(its output is part of the answer)")
    problems += _labels_and_grading_text(info, page)
    problems += figure_problems(info["figures"], tab, f"{page}.html")
    if info["overflowingOutputs"]:
        problems.append(f"printed output wider than the column (a horizontal scroll bar; wrap printed lines at "
                        f"88 characters): {info['overflowingOutputs'][:3]}")
    problems += _citation_problems(info, page)
    if info["searchControls"] != 1:
        problems.append(f"{info['searchControls']} visible search boxes on the desktop: one is enough (the sidebar's)")
    if "CC BY 4.0" not in info["footer"]:
        problems.append(f"the footer does not state the licence of the text (CC BY 4.0): {info['footer'][:200]!r}")
    if info["solutions"] or info["solutionCells"]:  # a close-up of the collapsed solutions, for review
        p.locator(".cell.tag_solution, .solution").first.evaluate("el => el.scrollIntoView({block: 'center'})")
        screenshot(p, f"{shot_name(page)}__solutions", full_page=False)
    problems += _open_one_solution(p, info)

    # Issue button and search box.
    issue_prefix = f"{repo_url()}/issues/new"
    issues = [h for h in info["issue"] if h.startswith(issue_prefix)]
    if not issues:
        problems.append(f"no issue button linking to {issue_prefix}?... (found {info['issue']})")
    elif not any(f"/{page}.html" in unquote(h) for h in issues):
        problems.append(f"the issue button does not name the page: {issues}")
    if not info["searchInputs"] or not any(a and a.endswith("search.html") for a in info["searchForms"]):
        problems.append(f"no search box (form.bd-search -> search.html): {info['searchForms']}")
    elif not info["searchVisible"]:
        problems.append("the search box is not visible")
    errors = [e for e in tab.errors if not any(known in e for known in KNOWN_JS_ERRORS)]
    if errors:
        problems.append(f"JavaScript errors: {errors[:3]}")
    return problems


def _open_one_solution(p, info) -> list[str]:
    """Click the first collapsed solution of each kind and check its content appears."""
    problems = []
    collapsed = [s for s in info["solutions"] if not s["bodyVisible"]]
    if collapsed:
        sol = p.locator(f'[id="{collapsed[0]["id"]}"]') if collapsed[0]["id"] else p.locator(".solution").first
        toggle = sol.locator("button.toggle-button, .admonition-title").first
        toggle.click()
        body = sol.locator("> :not(.admonition-title):not(button)").first
        try:
            body.wait_for(state="visible", timeout=5000)
        except Exception:
            problems.append(f"solution {collapsed[0]['id']!r} did not open on a click")
    for answer in (False, True):  # one solution cell, one answer in prose
        cells = [c for c in info["solutionCells"] if c["answer"] == answer and not c["contentVisible"]
                 and not c["codeVisible"]]
        if not cells:
            continue
        cell = p.locator(".cell.tag_solution").nth(cells[0]["index"])
        summary = cell.locator("details > summary").first
        if summary.count():
            summary.click()
            try:
                if answer:
                    cell.locator("details > :not(summary)").first.wait_for(state="visible", timeout=5000)
                else:
                    cell.locator(".cell_input").first.wait_for(state="visible", timeout=5000)
                    if cell.locator(".cell_output").count():
                        cell.locator(".cell_output").first.wait_for(state="visible", timeout=5000)
            except Exception:
                what = "answer" if answer else "solution cell"
                problems.append(f"{what} #{cells[0]['index'] + 1} did not open on a click")
    return problems


SOLUTION_LABEL, ANSWER_LABEL, SETUP_LABEL = "Show solution", "Show answer", "Show setup code"


def _labels_and_grading_text(info, page: str) -> list[str]:
    """Collapsed cells say what they hide; no nbgrader marker or hidden test in the text."""
    problems = []
    for cell in info["hiddenCells"]:
        classes = cell["classes"].split()
        if cell["open"] or cell["contentVisible"]:
            problems.append(f"a collapsed cell is open on load ({cell['classes']})")
        if "tag_setup" in classes and cell["label"] != SETUP_LABEL:
            problems.append(f"the setup cell's toggle reads {cell['label']!r}, not {SETUP_LABEL!r} "
                            "(run python tools/setup_cell.py)")
        elif "optlab-answer" in classes and cell["label"] != ANSWER_LABEL:
            problems.append(f"an answer's toggle reads {cell['label']!r}, not {ANSWER_LABEL!r}")
        elif "tag_solution" in classes and "optlab-answer" not in classes and cell["label"] != SOLUTION_LABEL:
            problems.append(f"a solution's toggle reads {cell['label']!r}, not {SOLUTION_LABEL!r} "
                            "(run python tools/setup_cell.py)")
    src = source_of(page)
    if src is not None and src.suffix == ".ipynb":
        setups = [c for c in info["hiddenCells"] if "tag_setup" in c["classes"].split()]
        if not setups:
            problems.append("the setup cell is not collapsed (tag it hide-input: python tools/setup_cell.py)")
    text = info["cellText"]  # the prose may name the markers (the preface explains them); cells may not
    problems += [f"nbgrader marker {m!r} in a cell of the page" for m in GRADING_MARKERS if m in text]
    hidden = [line for line in hidden_test_lines(src) if line in text] if src else []
    if hidden:
        problems.append(f"hidden tests shown in the page: {hidden[:3]}")
    return problems


def hidden_test_lines(src: Path | None) -> list[str]:
    """The (stripped, non-trivial) lines inside hidden-test regions of a notebook."""
    if src is None or src.suffix != ".ipynb":
        return []
    import nbformat

    lines, inside = [], False
    for cell in nbformat.read(src, as_version=4).cells:
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and len(line.strip()) > 10:
                lines.append(line.strip())
    return lines


def png_dpi(path: Path) -> float | None:
    """The DPI stored in a PNG (its pHYs chunk), or None."""
    import struct

    data = path.read_bytes()
    k = data.find(b"pHYs")
    if k < 0:
        return None
    ppu, _, unit = struct.unpack(">IIB", data[k + 4:k + 13])
    return ppu * 0.0254 if unit == 1 else None


def figure_problems(figures, tab: Tab, page_url: str, sharp: bool = True) -> list[str]:
    """Alt text, sharpness, aspect ratio, click-to-enlarge and the font-size proxy of each figure."""
    from urllib.parse import urljoin

    from optlab import plotting

    problems = []
    for fig in figures:
        name = fig["src"].rsplit("/", 1)[-1][:16]
        alt = (fig["alt"] or "").strip()
        if not alt or alt == fig["src"] or re.search(r"\.(png|svg|jpe?g)\b|_images/", alt) or len(alt.split()) < 3:
            problems.append(f"figure {name}: alt text {alt!r} does not say what it shows (cell metadata "
                            '"mystnb": {"image": {"alt": "..."}})')
        (nat_w, nat_h), (w, h) = fig["natural"], fig["rendered"]
        if not (nat_w and w):
            continue
        if sharp and nat_w < 2 * w - 1:
            problems.append(f"figure {name}: {nat_w} px shown at {w:.0f} px: not sharp on a high-DPI screen "
                            "(optlab.plotting.use_style stores retina PNGs)")
        if h and abs(h / w - nat_h / nat_w) > 0.02 * nat_h / nat_w:
            problems.append(f"figure {name}: distorted ({w:.0f}x{h:.0f} shown, {nat_w}x{nat_h} stored)")
        if not fig["link"] or fig["link"].rsplit("/", 1)[-1] != fig["src"].rsplit("/", 1)[-1]:
            problems.append(f"figure {name}: a click does not open the full-size image (link {fig['link']!r})")
        if tab.html is not None:
            file = tab.html / urlsplit(urljoin(f"http://x/{page_url}", fig["src"])).path.lstrip("/")
            dpi = png_dpi(file) if file.exists() else None
            if dpi is None:
                problems.append(f"figure {name}: no DPI in the PNG ({file.name})")
                continue
            font_px = plotting.min_font_size() * dpi / 72 * w / nat_w
            if font_px < MIN_FONT_PX:
                problems.append(f"figure {name}: its smallest font ({plotting.min_font_size()} pt) shows at "
                                f"{font_px:.1f} px < {MIN_FONT_PX:.0f} px (9 pt) at a {tab.viewport['width']} px "
                                f"wide window: the figure is {nat_w / dpi:.1f} in wide; at most "
                                f"{plotting.FIGURE_WIDTH} in (optlab.plotting.subplots stacks panels)")
    return problems


def _citation_problems(info, page: str) -> list[str]:
    problems = []
    if info["citeLinksLeft"]:
        problems.append(f"citation links not turned into citations: {info['citeLinksLeft'][:3]}")
    src = source_of(page)
    cites = src is not None and re.search(r"\{cite", src.read_text())
    if cites and not info["citations"]:
        problems.append("the source cites papers but the page has no citation linked to the bibliography")
    for c in info["citations"]:
        if not c["links"] or not all("bibliography.html#" in link["href"] for link in c["links"]):
            problems.append(f"a citation not linked to the bibliography: {c}")
    return problems


@pytest.mark.parametrize("page", pages_to_check())
def test_page_reads_well(tab, page):
    """Math typeset offline, images, Colab and issue buttons, search box, no raw MyST, solutions collapsed."""
    problems = page_problems(tab, page)
    assert not problems, f"{page}.html:\n- " + "\n- ".join(problems)


def _search_hits(p) -> list[str]:
    """The result links once Sphinx's search has finished (it writes its summary line last)."""
    p.wait_for_function("() => (document.querySelector('#search-results .search-summary')?.innerText || '')"
                        ".trim().length > 0", timeout=TIMEOUT_MS)
    return p.eval_on_selector_all("#search-results ul.search li a", "els => els.map(a => a.href)")


@pytest.mark.parametrize("chapter", method_chapters())
def test_search_finds_method(tab, chapter):
    """search.html?q=<method name> lists the method's chapter."""
    query = Path(chapter).name.replace("_", " ")
    p = tab.open(f"search.html?q={quote(query)}")
    hits = _search_hits(p)
    screenshot(p, f"search__{shot_name(chapter)}", full_page=False)
    assert any(urlsplit(h).path.endswith(f"/{chapter}.html") for h in hits), (
        f"searching {query!r} does not list {chapter}.html; results: {hits}")
    assert not tab.offsite, f"search made requests off this machine: {tab.offsite}"


def test_search_box_leads_to_results(tab):
    """Typed into the preface's search box, a method's name leads to its chapter."""
    chapters = method_chapters()
    if not chapters:
        pytest.fail("no method chapter in _toc.yml yet (the first chapter of a part, other than the toolkit)")
    chapter = chapters[0]
    query = Path(chapter).name.replace("_", " ")
    p = tab.open(f"{_toc()['root']}.html")
    button = p.locator(".search-button__button, .search-button-field").locator("visible=true").first
    button.click()
    box = p.locator("form.bd-search input[name='q']").locator("visible=true").first
    box.fill(query)
    box.press("Enter")
    p.wait_for_url(re.compile(r"search\.html\?q="))
    hits = _search_hits(p)
    assert any(urlsplit(h).path.endswith(f"/{chapter}.html") for h in hits), (
        f"the search box did not find {chapter}.html for {query!r}; results: {hits}")


def _figure_page(book_html: Path) -> str | None:
    for page in pages_to_check():
        html = book_html / f"{page}.html"
        if html.exists() and re.search(r'class="cell_output[^"]*"[^>]*>\s*(<a [^>]*>\s*)?<img', html.read_text()):
            return page
    return None


def test_dark_mode_figures_stay_readable(tab, book_html):
    """The theme switch gives the dark theme; each figure keeps an opaque white background, readable."""
    page = _figure_page(book_html)
    if page is None:
        pytest.fail(f"no figure (an image in a cell output) on any of {pages_to_check()}")
    p = tab.open(f"{page}.html")
    p.evaluate(WAIT_IMAGES)

    switch = p.locator(".theme-switch-button").locator("visible=true").first
    for _ in range(3):
        if p.evaluate("document.documentElement.dataset.theme") == "dark":
            break
        switch.click()
    assert p.evaluate("document.documentElement.dataset.theme") == "dark", "the theme switch never gave dark"
    p.wait_for_timeout(300)  # CSS transitions

    figures = p.evaluate(FIGURE_FILES)
    assert figures, f"{page}.html: no figure found in the page"
    problems = []
    imgs = p.locator("article .cell_output img")
    for k, fig in enumerate(figures):
        name = fig["src"].rsplit("/", 1)[-1][:16]
        # The stored PNG: opaque everywhere, white corners (optlab.plotting.use_style, applied by the setup cell).
        if fig["minAlpha"] < 255:
            problems.append(f"figure {name}: transparent pixels in the PNG (min alpha {fig['minAlpha']}): "
                            "is use_style() applied before plotting?")
        if any(min(c[:3]) < 245 or c[3] < 255 for c in fig["corners"]):
            problems.append(f"figure {name}: corners not opaque white: {fig['corners']}")
        # What the dark theme does to it.
        if "invert" in fig["filter"] or "opacity" in fig["filter"]:
            problems.append(f"figure {name}: dark theme applies filter {fig['filter']!r}")
        if float(fig["opacity"]) < 1 or fig["mixBlend"] != "normal":
            problems.append(f"figure {name}: opacity {fig['opacity']}, mix-blend-mode {fig['mixBlend']}")
        # As rendered: the screenshot of the figure, inside its padding.
        el = imgs.nth(k)
        el.scroll_into_view_if_needed()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = el.screenshot(path=str(SCREENSHOTS / f"{shot_name(page)}__dark__figure{k + 1}.png"))
        px = p.evaluate(PIXELS, [base64.b64encode(shot).decode(), int(fig["padding"]) + 3])
        bg = px["corners"]
        if any(_luminance(c) < 0.6 for c in bg) or max(max(c[:3]) - min(c[:3]) for c in bg) > 12:
            problems.append(f"figure {name}: rendered background not light and neutral in dark mode: {bg}")
        ratio = _contrast(bg[0], px["darkest"])
        if ratio < 4.5:
            problems.append(f"figure {name}: rendered contrast {ratio:.1f}:1 < 4.5:1 in dark mode "
                            f"(background {bg[0]}, darkest {px['darkest']})")
    imgs.first.evaluate("el => el.scrollIntoView({block: 'center'})")
    p.wait_for_timeout(200)
    screenshot(p, f"{shot_name(page)}__dark", full_page=False)
    assert not problems, f"{page}.html in dark mode:\n- " + "\n- ".join(problems)


# --------------------------------------------------------------------------- the PDF of the book

def test_pdf_download_button(tab, book_html):
    """Every page checked offers "Download the book (PDF)": one header link to <name>.pdf at the book's root;
    where the PDF is in the served folder, the link serves it."""
    name = book_pdf.pdf_name()
    expected = f"{tab.base}/{name}"
    problems = []
    for page in pages_to_check():
        p = tab.open(f"{page}.html")
        links = p.get_by_role("link", name=book_pdf.BUTTON_TOOLTIP)
        if links.count() != 1:
            problems.append(f"{page}.html: {links.count()} links named {book_pdf.BUTTON_TOOLTIP!r}, expected one")
            continue
        href = links.first.evaluate("a => a.href")
        if href != expected:
            problems.append(f"{page}.html: the PDF button links to {href}, expected {expected}")
        if not links.first.is_visible():
            problems.append(f"{page}.html: the PDF button is not visible")
    assert not problems, "\n- ".join(["the PDF button:"] + problems)

    p.get_by_role("link", name=book_pdf.BUTTON_TOOLTIP).hover()  # its tooltip, for review
    p.wait_for_timeout(800)
    screenshot(p, "pdf_button", full_page=False)
    if not (book_html / name).is_file():
        if os.environ.get("OPTLAB_BOOK_PDF"):
            pytest.fail(f"OPTLAB_BOOK_PDF is set but {book_html / name} is missing: build the PDF first "
                        "(python tools/book_pdf.py), then the HTML, which copies it", pytrace=False)
        return  # a book built without its PDF: the link is checked, there is nothing to serve
    response = tab.context.request.get(expected)
    assert response.status == 200, f"{expected}: HTTP {response.status}"
    assert response.headers.get("content-type", "").startswith("application/pdf"), response.headers
    assert response.body()[:5] == b"%PDF-", f"{expected} is not a PDF"


# --------------------------------------------------------------------------- a phone

@pytest.mark.parametrize("page", pages_to_check())
def test_page_reads_well_on_a_phone(phone_tab, page):
    """At 400 px: no horizontal page scroll, a search control, figures readable (9 pt), no JS error."""
    p = phone_tab.open(f"{page}.html")
    p.evaluate(WAIT_MATHJAX)
    p.evaluate(WAIT_IMAGES)
    info = p.evaluate(PROBE)
    screenshot(p, f"{shot_name(page)}__phone")
    problems = figure_problems(info["figures"], phone_tab, f"{page}.html")
    if info["pageWidth"] > PHONE["width"] + 1:
        problems.append(f"the page is {info['pageWidth']} px wide on a {PHONE['width']} px screen "
                        "(a horizontal scroll bar for the whole page)")
    if info["searchControls"] < 1:
        problems.append("no visible search control on a phone")
    if phone_tab.errors:
        problems.append(f"JavaScript errors: {phone_tab.errors[:3]}")
    if phone_tab.offsite:
        problems.append(f"requests off this machine: {phone_tab.offsite[:3]}")
    assert not problems, f"{page}.html at {PHONE['width']} px:\n- " + "\n- ".join(problems)


# --------------------------------------------------------------------------- bibliography and API reference

def _bib_page() -> str:
    return next(f for f in _book.toc_files() if f.endswith("bibliography"))


def test_bibliography_has_one_author_year_style(tab):
    """Labels are author-year (``[Liu and Zhou, 2024]``), as the citations in the text read; each
    entry links a web page once; editions are ordinals; every citation's words match its entry."""
    p = tab.open(f"{_bib_page()}.html")
    entries = p.evaluate(BIBLIOGRAPHY)
    assert entries, "no entry in the bibliography"
    problems = []
    for e in entries:
        if not re.fullmatch(r".+, (\d{4}[a-z]?|n\.d\.)", e["label"] or ""):
            problems.append(f"label {e['label']!r} is not author-year ('Authors, Year')")
        if len(e["hrefs"]) != len(set(e["hrefs"])):
            problems.append(f"[{e['label']}] links the same page twice: {e['hrefs']}")
        if re.search(r"\b\d+ edition\b", e["text"]):
            problems.append(f"[{e['label']}]: {re.search(r'[^.]*edition', e['text']).group(0)!r} "
                            "(an ordinal, or a word: edition = {Second})")
    labels = {e["id"]: e["label"] for e in entries}
    seen = 0
    for page in pages_to_check():
        q = tab.open(f"{page}.html", idle=False)  # the citations are in the HTML: no need to wait for MathJax
        for c in q.evaluate(PROBE)["citations"]:
            for link in c["links"]:
                target = link["href"].rsplit("#", 1)[-1]
                label = labels.get(target)
                seen += 1
                if label is None:
                    problems.append(f"{page}: citation {c['text']!r} links #{target}, not an entry")
                    continue
                authors, year = label.rsplit(", ", 1)
                if link["text"] != label and not (link["text"] == year and f"{authors} ({year})" in c["text"]):
                    problems.append(f"{page}: citation {c['text']!r} does not read like its entry [{label}]")
    assert seen, "no citation on any checked page links the bibliography"
    assert not problems, "\n".join(problems)


def test_api_reference_links_every_chapter(built_book):
    """Each ``Book: chapters/...`` line of a docstring is a link to that chapter in the API page."""
    import html as html_lib

    api = next(f for f in _book.toc_files() if f.endswith("/api"))
    page = (built_book / f"{api}.html").read_text()
    mentioned = set()
    for path in (ROOT / "optlab").rglob("*.py"):
        mentioned |= set(re.findall(r"Book:\s*(chapters/[\w/.-]+?)\.(?:ipynb|md)", path.read_text()))
    problems, linked = [], set()
    for m in re.finditer(r"Book:(.*?)</p>", page, re.S):
        hrefs = re.findall(r'href="([^"#]+)', m.group(1))
        if not hrefs:
            problems.append(f"a Book: line without a link: {html_lib.unescape(re.sub('<[^>]+>', '', m.group(0)))!r}")
        for href in hrefs:
            target = (built_book / api).parent / href
            if not target.resolve().exists():
                problems.append(f"Book: link to a missing page {href}")
            linked.add(target.resolve().relative_to(built_book.resolve()).with_suffix("").as_posix())
    shown = {m for m in mentioned if (ROOT / f"{m}.ipynb").exists() or (ROOT / f"{m}.md").exists()}
    missing = shown - linked
    assert not missing, f"chapters named in docstrings but not linked from the API page: {sorted(missing)}"
    assert linked, "the API page links no chapter"
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- every built page, statically

def _built_pages(built_book: Path) -> list[Path]:
    return [p for p in built_book.rglob("*.html")
            if not {"_static", "_sources", "_modules"} & set(p.relative_to(built_book).parts)]


def test_no_grading_markers_or_hidden_tests_on_any_page(built_book):
    """The HTML book never shows nbgrader's markers in code (they stay in the notebooks; prose may
    name them, as the preface does) nor any hidden test."""
    import html as html_lib

    hidden = sorted({line for nb in _book.notebooks() for line in hidden_test_lines(nb)})
    problems = []
    for path in _built_pages(built_book):
        page = path.read_text()
        text = html_lib.unescape(re.sub(r"<[^>]+>", "", page))
        code = html_lib.unescape(re.sub(r"<[^>]+>", "", "\n".join(re.findall(r"<pre[^>]*>(.*?)</pre>", page, re.S))))
        rel = path.relative_to(built_book)
        problems += [f"{rel}: {m!r} in code" for m in GRADING_MARKERS if m in code]
        problems += [f"{rel}: hidden test {line!r}" for line in hidden if line in text]
    assert not problems, "\n".join(problems)


def test_no_inline_script_declared_twice(built_book):
    """A `const`/`let` declared twice in a page's inline scripts throws: each must appear once
    (Jupyter Book 1 wrote sphinx-thebe's `const THEBE_JS_URL` twice; the book drops sphinx_thebe)."""
    problems = []
    for path in _built_pages(built_book):
        bodies = re.findall(r"<script>(.*?)</script>", path.read_text(), re.S)
        names = [n for b in bodies for n in re.findall(r"\b(?:const|let)\s+([A-Za-z_$][\w$]*)\s*=", b)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            problems.append(f"{path.relative_to(built_book)}: {twice} declared twice")
        if "THEBE_JS_URL" in path.read_text():
            problems.append(f"{path.relative_to(built_book)}: sphinx-thebe's script (the book does not use thebe)")
    assert not problems, "\n".join(problems[:10])
