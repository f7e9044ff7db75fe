"""Build the book from the committed notebooks and read it the way a reader would: in Chromium."""
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"

pytestmark = pytest.mark.browser
CHAPTER = r"book/(\d\d|appendix)-"  # the pages made from chapters (numbered, then appendices): a Colab button each


def _pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [c["file"] for c in part.get("chapters", [])]
    return pages


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    # The site workflow installs neither PyTorch nor the package: the build must not import them.
    blocked = tmp_path_factory.mktemp("blocked")
    for name in ("torch", "dcprivacy"):
        (blocked / name).mkdir()
        (blocked / name / "__init__.py").write_text(f"raise ImportError('the site build imported {name}')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked)] + [p for p in os.environ.get(
        "PYTHONPATH", "").split(os.pathsep) if p])}
    proc = subprocess.run([sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build",
                           str(ROOT), "--path-output", str(out),
                           "-W", "-n", "--keep-going"], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    html = out / "_build" / "html"
    assert (html / "index.html").exists()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield html, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: `apt-get install chromium` (Debian)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--disable-component-update", "--no-first-run", "--disable-sync"])
        yield b
        b.close()


@pytest.mark.parametrize("page_path", _pages())
def test_page_renders_offline(site, browser, page_path):
    html, base = site
    url = urljoin(base, page_path + ".html")
    origin = urlparse(base).netloc
    requested, failed = [], []
    page = browser.new_page()
    page.on("request", lambda r: requested.append(r.url))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.route("**/*", lambda route: route.continue_() if urlparse(route.request.url).netloc == origin
               or route.request.url.startswith(("data:", "blob:")) else route.abort())
    resp = page.goto(url, wait_until="networkidle")
    assert resp is not None and resp.status == 200, url

    # the page asked for nothing outside the local server
    outside = [u for u in requested if urlparse(u).netloc not in (origin, "") and not u.startswith(("data:", "blob:"))]
    assert not outside, f"{page_path} requested from the network: {outside}"
    assert not failed, f"{page_path}: failed requests {failed}"

    # math typeset by MathJax, no raw TeX delimiters left in the text
    has_math = page.evaluate("document.querySelectorAll('.math, span.math, div.math').length") > 0
    if has_math:
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30000)
        page.evaluate("() => MathJax.startup.promise")
        assert page.evaluate("document.querySelectorAll('mjx-container').length") > 0, f"{page_path}: math not typeset"
    text = page.inner_text("article")
    assert "$$" not in text and not re.search(r"\\\(|\\\[", text), f"{page_path}: raw TeX left on the page"

    # every figure loaded
    broken = page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert not broken, f"{page_path}: images failed to load {broken}"

    # every figure of the text has a caption saying what it shows and an alt text that describes it
    figures = page.evaluate("""[...document.querySelectorAll('article img')].map(i => ({
        src: i.getAttribute('src'), alt: (i.getAttribute('alt') || '').trim(),
        caption: ((i.closest('figure') || {}).querySelector ? (i.closest('figure').querySelector('figcaption') || {}).innerText || '' : '').trim()}))""")
    for f in figures:
        name = f["src"].rsplit("/", 1)[-1]
        assert len(f["caption"]) > 40, f"{page_path}: figure {name} has no caption that says what it shows: {f['caption']!r}"
        assert len(f["alt"]) > 20 and not re.search(r"_images/|\.(png|jpe?g|svg)$", f["alt"]), \
            f"{page_path}: figure {name} has no meaningful alt text: {f['alt']!r}"

    # internal links resolve (to a file of the site, and to an anchor on it when they name one)
    links = page.evaluate("[...document.querySelectorAll('article a[href]')].map(a => a.href)")
    for link in links:
        p = urlparse(link)
        if p.netloc != origin:
            continue
        target = html / p.path.lstrip("/")
        if p.path.endswith("/"):
            target = target / "index.html"
        assert target.exists(), f"{page_path}: broken link {link}"
        if p.fragment and target.suffix == ".html":
            assert f'id="{p.fragment}"' in target.read_text(), f"{page_path}: missing anchor {link}"
    page.close()


def test_colab_button_opens_the_generated_notebook_at_the_release(site):
    sys.path.insert(0, str(ROOT / "tools"))
    import notebooks as N
    html, _ = site
    p = N.project()
    chapters = [c for c in _pages() if re.match(CHAPTER, c)]
    for chapter in chapters:
        stem = chapter.split("/")[-1]
        links = re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', (html / f"{chapter}.html").read_text())
        assert links == [p.colab(stem)], f"{chapter}: Colab links {links}"
        assert (ROOT / N.NOTEBOOKS / f"{stem}.ipynb").exists()
    for page in set(_pages()) - set(chapters):
        assert "colab.research.google.com" not in (html / f"{page}.html").read_text(), page


def _serve(html):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def student_site():
    """The students' edition, built once by the command a course runs."""
    proc = subprocess.run(["bash", str(ROOT / "tools" / "book.sh"), "--render-only", "--without-solutions"],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, f"students' edition failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    html = ROOT / "_build" / "html-nosolutions"
    assert (html / "index.html").exists()
    server = _serve(html)
    yield html, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_instructors_edition_keeps_solutions_collapsed(site):
    html, _ = site
    chapters = [p for p in _pages() if re.match(CHAPTER, p)]
    for chapter in chapters:
        text = (html / f"{chapter}.html").read_text()
        solutions = re.findall(r'<div class="solution[^"]*"', text)
        assert solutions and all("dropdown" in s for s in solutions), f"{chapter}: solutions missing or not collapsed"


def test_students_edition_has_no_solutions(student_site, browser):
    html, base = student_site
    chapters = [p for p in _pages() if re.match(CHAPTER, p)]
    for chapter in chapters:  # every page of the edition, as files
        text = (html / f"{chapter}.html").read_text()
        assert 'class="exercise' in text, f"{chapter}: the exercises are gone too"
        assert not re.search(r'class="solution', text), f"{chapter}: a solution block is left"
    page = browser.new_page()  # and one page as a student opens it
    resp = page.goto(urljoin(base, "book/08-dp-condensation.html"), wait_until="networkidle")
    assert resp is not None and resp.status == 200
    assert page.evaluate("document.querySelectorAll('.exercise').length") > 0
    assert page.evaluate("document.querySelectorAll('.solution').length") == 0
    assert "Solution to" not in page.inner_text("article")
    page.close()
