"""The built website in a real browser: headless Chromium driven by Playwright. Every page loads with no console
error, no failed request and no request leaving the local server; math is typeset, images load and internal links
resolve. Chapter pages also get a screenshot in `_build/screenshots/` to look at.

The browser is found the usual ways (:func:`find_chromium`). Without one these tests are skipped with a line that
says how to install one, except under ``CI=true``, where a missing browser is an error (`.ci/run` installs
Debian's `chromium`).
"""

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import nbformat
import pytest

from .conftest import CHAPTERS, ROOT

#: Executables tried, in order, on PATH: Debian's package, Ubuntu's older one, Google's builds.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: The environment variable that names a Chromium-family executable to use instead.
CHROMIUM_VARIABLE = "CHROMIUM_EXECUTABLE"
INSTALL_HINT = ("install one: `apt-get install chromium` (Debian/Ubuntu), or `.venv/bin/python -m playwright "
                f"install chromium`, or set {CHROMIUM_VARIABLE} to a Chromium or Chrome executable")
SCREENSHOTS = ROOT / "_build" / "screenshots"
# Chromium as root, in a sandboxed machine with no network: no sandbox, no GPU, no background connections
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the tests report what matters
        pass


@pytest.fixture(scope="module")
def server(site):
    """The site served over HTTP on 127.0.0.1 (a free port); yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def find_chromium(playwright=None) -> tuple[str | None, str]:
    """The browser to test with, as ``(executable or None, where it was found)``.

    In order: the executable named by ``$CHROMIUM_EXECUTABLE`` (which must exist), a Chromium or Chrome on PATH
    (:data:`CHROMIUM_NAMES`), then Playwright's own downloaded Chromium (``None`` as the executable: Playwright
    launches it itself). ``(None, "")`` when there is none.
    """
    named = os.environ.get(CHROMIUM_VARIABLE)
    if named:
        path = shutil.which(named) or (named if Path(named).is_file() else None)
        if path is None:
            raise FileNotFoundError(f"{CHROMIUM_VARIABLE}={named!r} is not an executable")
        return path, f"${CHROMIUM_VARIABLE}"
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path, "PATH"
    if playwright is not None and Path(playwright.chromium.executable_path).is_file():
        return None, "Playwright's own Chromium"
    return None, ""


@pytest.fixture(scope="session")  # session scope: set up (or skipped) before the session-scoped site is built
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        executable, found = find_chromium(playwright)
        if not found:
            message = f"no Chromium or Chrome found for the browser tests: {INSTALL_HINT}"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(message + " (under CI a browser is required: .ci/run installs Debian's chromium)")
            pytest.skip(message)
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageVisit:
    """One page opened in a fresh browser context, with everything that went wrong on the way recorded."""

    def __init__(self, browser, server, path):
        self.server = server
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors, self.failed, self.outside = [], [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response",
                     lambda r: self.failed.append(f"{r.url} ({r.status})") if r.status >= 400 else None)
        self.page.route("**/*", self._only_local)
        self.page.goto(urljoin(server, path), wait_until="networkidle")

    def _only_local(self, route):
        if route.request.url.startswith(self.server):
            route.continue_()
        else:  # recorded, and refused: the page must not depend on it
            self.outside.append(route.request.url)
            route.abort()

    def wait_for_math(self) -> bool:
        """Wait until MathJax has typeset the page; False if it never started (its script did not load)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                        timeout=15_000)
        except PlaywrightTimeout:
            return False
        self.page.evaluate("() => MathJax.startup.promise")
        return True

    def close(self):
        self.context.close()


def _pages(site):
    """Every HTML page of the book; `_static/` holds the theme's template fragments and the JavaScript packages."""
    return sorted(path for path in (p.relative_to(site).as_posix() for p in site.rglob("*.html"))
                  if not path.startswith("_static/"))


@pytest.mark.slow
def test_every_page_loads_cleanly_with_math_images_and_links(browser, site, server):
    pages = _pages(site)
    assert {f"book/{chapter}/{path.stem}.html" for chapter, path in CHAPTERS.items()} <= set(pages)
    problems = []
    for path in pages:
        visit = PageVisit(browser, server, path)
        try:
            page = visit.page
            html = (site / path).read_text(encoding="utf-8")
            if 'class="math' in html:
                if not visit.wait_for_math():
                    problems.append(f"{path}: MathJax did not start")
                elif page.locator("mjx-container").count() == 0:
                    problems.append(f"{path}: math not typeset")
            # text outside code and scripts: no TeX left untypeset
            prose = page.evaluate("""() => { const body = document.body.cloneNode(true);
                body.querySelectorAll('pre, code, script, style, mjx-container, .highlight')
                    .forEach(e => e.remove());
                return body.innerText; }""")
            for raw in ("$$", "\\(", "\\[", "\\begin{"):
                if raw in prose:
                    problems.append(f"{path}: raw TeX {raw!r} in the text")
            broken = page.evaluate("""() => Array.from(document.images)
                .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)""")
            problems += [f"{path}: image not loaded: {src}" for src in broken]
            for href in page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"):
                problem = _resolve(site, server, href)
                if problem:
                    problems.append(f"{path}: link {href}: {problem}")
            problems += [f"{path}: console error: {e}" for e in visit.errors]
            problems += [f"{path}: failed request: {f}" for f in visit.failed]
            problems += [f"{path}: request outside the site: {u}" for u in visit.outside]
        finally:
            visit.close()
    assert not problems, "\n".join(problems[:50])


@functools.lru_cache(maxsize=None)
def _ids(path: Path) -> frozenset:
    return frozenset(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8", errors="replace")))


def _resolve(site: Path, server: str, href: str) -> str | None:
    """None if an internal link points at an existing file (and anchor); else what is wrong."""
    if not href.startswith(server):
        return None  # external (a cited paper, say): not followed, and not a request the page makes
    parts = urlsplit(href)
    target = site / unquote(parts.path).lstrip("/")
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return "no such file"
    if parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _ids(target):
        return f"no element with id {parts.fragment!r}"
    return None


@pytest.mark.slow
@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_chapter_page_solution_toggle_download_and_screenshot(browser, site, server, chapter):
    path = CHAPTERS[chapter]
    visit = PageVisit(browser, server, f"book/{chapter}/{path.stem}.html")
    try:
        page = visit.page
        assert visit.wait_for_math(), f"MathJax did not start; requests outside the site: {visit.outside}"
        # the first answer cell is folded; its toggle opens it
        toggle = page.locator(".tag_hide-input details summary").first
        code = page.locator(".tag_hide-input details .highlight").first
        assert "Show solution" in toggle.inner_text() and not code.is_visible()
        toggle.click()
        assert code.is_visible() and "def " in code.inner_text()
        toggle.click()  # folded again for the screenshot
        # the download link gives the student notebook: no solutions, no hidden tests
        link = page.locator("a.download-exercises-link")
        assert link.is_visible()
        response = page.request.get(urljoin(page.url, link.get_attribute("href")))
        assert response.ok
        nb = nbformat.reads(response.text(), as_version=4)
        nbformat.validate(nb)
        text = response.text()
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "hidden=True" not in text
        assert "raise NotImplementedError()" in text
        if chapter == "01_mdp":  # the widget is rendered by the locally served widget manager
            page.wait_for_selector(".jupyter-widgets.widget-slider, .jupyter-widgets .widget-slider",
                                   timeout=15_000)
            widget_image = page.locator(".jupyter-widgets img").first
            assert widget_image.evaluate("i => i.complete && i.naturalWidth > 0")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{chapter}.png"), full_page=True)
        assert not visit.errors and not visit.failed and not visit.outside
    finally:
        visit.close()


def _fake_executable(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_find_chromium_looks_at_the_variable_then_path(tmp_path, monkeypatch):
    monkeypatch.delenv(CHROMIUM_VARIABLE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_chromium() == (None, "")
    google = _fake_executable(tmp_path, "google-chrome")
    assert find_chromium() == (str(google), "PATH")
    debian = _fake_executable(tmp_path, "chromium")
    assert find_chromium() == (str(debian), "PATH")  # Debian's package comes first
    (tmp_path / "elsewhere").mkdir()
    other = _fake_executable(tmp_path / "elsewhere", "my-chrome")
    monkeypatch.setenv(CHROMIUM_VARIABLE, str(other))
    assert find_chromium() == (str(other), f"${CHROMIUM_VARIABLE}")
    monkeypatch.setenv(CHROMIUM_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="is not an executable"):
        find_chromium()


def test_without_a_browser_the_tests_skip_with_how_to_install_one_but_fail_under_ci(tmp_path):
    """Run this file's browser tests in a child pytest with an empty PATH and no Playwright browsers."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("CI", CHROMIUM_VARIABLE)}
    env.update(PATH=str(tmp_path), PLAYWRIGHT_BROWSERS_PATH=str(tmp_path / "none"))
    command = [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", str(Path(__file__)),
               "-k", "every_page"]
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0 and "1 skipped" in run.stdout, run.stdout + run.stderr
    assert "apt-get install chromium" in run.stdout
    run = subprocess.run(command, capture_output=True, text=True, env={**env, "CI": "true"}, cwd=tmp_path)
    assert run.returncode != 0 and "under CI a browser is required" in run.stdout, run.stdout + run.stderr
