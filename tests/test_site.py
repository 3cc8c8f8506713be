"""The course's website (``make site``, ``site/build_site.py``): what its pages hold, the variant without
solutions, and the built site in a real browser.

- Unit tests of the pieces (fast): a lesson's solutions folded or gone, the explorer's saved view
  never shown as a repr, launch buttons only with a repository URL, a public name without a
  docstring stops the build, the data and results pages.
- Two real builds (slow): the public site with a repository URL and a JupyterHub set (in a copy of
  pyproject.toml), and the private site with the repository's own pyproject.toml (URL unset today).
- The browser test: the public site served on 127.0.0.1 only, driven through Debian's Chromium by
  Playwright with every request off the loopback address refused. It crawls from the landing page
  and checks every page, link, anchor, image, the math, the search, the launch buttons and the API
  page, and saves screenshots to ``$NSLIB_SITE_SCREENSHOTS`` (default ``build/site-screenshots``).

Skipped (saying why) where Sphinx, Chromium or Playwright is missing; ``.ci/run`` sets
``NSLIB_BROWSER_TEST=required``, which turns those skips into failures.
"""
from __future__ import annotations

import functools
import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import nbformat
import pytest

from nslib import launch
from nslib.editions import ANSWER, BEGIN, END, exercise_cells

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "site"))

import build_site  # noqa: E402
import site_pages  # noqa: E402
import site_lessons  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: The address the public test build's launch buttons are made from (a copy of pyproject.toml).
TEST_URL, TEST_HUB = "https://github.com/example-org/nslib-course", "https://hub.example.edu"
SCREENSHOTS = Path(os.environ.get("NSLIB_SITE_SCREENSHOTS", ROOT / "build" / "site-screenshots"))
LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _skip_or_fail(reason: str):
    if os.environ.get("NSLIB_BROWSER_TEST") == "required":
        pytest.fail(f"the site tests must run here, but {reason}")
    pytest.skip(reason)


# --- the pieces ---------------------------------------------------------------------------------

def _notebook(*cells):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 09 · A lesson"), *cells])


def _exercise():
    cell = nbformat.v4.new_code_cell(f"def f(x):\n    {BEGIN}\n    return x * 42  # the secret\n    {END}\n"
                                     "exercises.check_f(f)")
    cell.outputs = [nbformat.v4.new_output("stream", text="[PASS] f\n")]
    return cell


def test_public_lesson_folds_each_solution_after_its_stub_and_each_answer_in_a_dropdown():
    answer = nbformat.v4.new_markdown_cell(f"{ANSWER} Because 42.")
    page = site_lessons.site_notebook(_notebook(_exercise(), answer), "09_x.ipynb", site_lessons.Launch(None, reason="unset"))
    sources = [c.source for c in page.cells]
    stub, solution = page.cells[1], page.cells[2]
    assert "raise NotImplementedError" in stub.source and "42" not in stub.source and not stub.outputs
    assert "return x * 42" in solution.source and solution.outputs  # the [PASS] line stays
    assert "hide-input" in solution.metadata["tags"]
    assert solution.metadata["mystnb"]["code_prompt_show"] == "Show the solution"
    assert sources[3].startswith("::::{dropdown} Instructor answer") and "Because 42." in sources[3]
    assert sources[0].startswith("# 09 · A lesson\n\n:::{container} launch-buttons")


def test_private_lesson_keeps_the_stub_and_drops_solutions_and_answers():
    answer = nbformat.v4.new_markdown_cell(f"{ANSWER} Because 42.")
    page = site_lessons.site_notebook(_notebook(_exercise(), answer), "09_x.ipynb",
                                 site_lessons.Launch(None, reason="unset"), private=True)
    text = json.dumps(nbformat.writes(page))
    assert "x * 42" not in text and "Because 42" not in text and "Instructor answer" not in text
    assert "raise NotImplementedError" in text


def test_a_saved_widget_view_becomes_its_picture_or_a_note_never_a_repr():
    widget = {"application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0},
              "text/plain": "Explorer(children=(VBox(...)))"}
    old = nbformat.v4.new_code_cell("display(explorer)")
    old.outputs = [nbformat.v4.new_output("display_data", data=dict(widget))]
    new = nbformat.v4.new_code_cell("display(explorer)")
    new.outputs = [nbformat.v4.new_output("display_data", data={**widget, "image/png": "iVBORw0KGgo="})]
    page = site_lessons.site_notebook(_notebook(old, new), "09_x.ipynb", site_lessons.Launch(None, reason="unset"))
    old_data, new_data = page.cells[1].outputs[0].data, page.cells[2].outputs[0].data
    assert old_data["text/markdown"] == site_lessons.WIDGET_NOTE and "VBox(" not in json.dumps(old_data)
    assert site_lessons.WIDGET_VIEW not in new_data and new_data["image/png"] == "iVBORw0KGgo="


def test_a_computed_markdown_outputs_links_to_pages_point_at_their_html():
    cell = nbformat.v4.new_code_cell("display(Markdown(verdict))")
    text = ("the rule of [docs](../docs/experiments.md#e3-ablation), [the README](../README.md), "
            "[a script](../scripts/sns_sweep.py) and [elsewhere](https://example.org/x.md)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": text, "text/plain": "<Markdown>"})]
    page = site_lessons.site_notebook(_notebook(cell), "09_x.ipynb", site_lessons.Launch(None, reason="unset"))
    assert page.cells[1].outputs[0].data["text/markdown"] == (
        "the rule of [docs](../docs/experiments.html#e3-ablation), [the README](../README.html), "
        "[a script](../scripts/sns_sweep.py) and [elsewhere](https://example.org/x.md)")


def test_launch_buttons_come_from_nslib_launch_and_only_with_a_repository_url():
    path = "student/01_attacks.ipynb"
    with_url = site_lessons.buttons_markdown(site_lessons.Launch(TEST_URL, TEST_HUB), "01_attacks.ipynb")
    for address in (launch.colab_url(TEST_URL, path), launch.binder_url(TEST_URL, path),
                    launch.hub_url(TEST_HUB, TEST_URL, path)):
        assert f"]({address})" in with_url
    assert "{download}`Download the student edition <../student/01_attacks.ipynb>`" in with_url
    without = site_lessons.buttons_markdown(site_lessons.Launch(None, TEST_HUB, "the URL is unset"), "01_attacks.ipynb")
    assert "http" not in without and "No launch buttons: the URL is unset" in without
    gitlab = site_lessons.Launch("https://gitlab.com/o/r").links(path)
    assert [label for label, _ in gitlab] == ["Launch on Binder"]  # Colab opens GitHub only


def test_a_public_name_without_a_docstring_stops_the_build(tmp_path, monkeypatch, capsys):
    (tmp_path / "fakemod.py").write_text(
        '"""A module."""\n__all__ = ["documented", "bare", "CONST", "BARE"]\n'
        'def documented():\n    """Has one."""\n'
        "def bare():\n    pass\n"
        "#: Has one.\nCONST = 1\n"
        "BARE = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    page, missing = site_pages.module_page("fakemod", {})
    assert missing == ["fakemod.bare", "fakemod.BARE"]
    assert ".. autofunction:: fakemod.documented" in page and ".. autodata:: fakemod.CONST" in page
    monkeypatch.setattr(site_pages, "public_modules", lambda: ["fakemod"])
    assert build_site.main(["--out", str(tmp_path / "site")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("site: error: 2 public names have no docstring") and "fakemod.bare" in error


def test_every_module_of_nslib_is_in_the_api_reference(tmp_path):
    modules = site_pages.write_api_pages(tmp_path)
    assert {"nslib", "nslib.sensitivity", "nslib.attacks.pgd", "nslib.experiments.ablation"} <= set(modules)
    page = (tmp_path / "api" / "nslib.sensitivity.md").read_text()
    assert ".. autofunction:: nslib.sensitivity.neuron_sensitivity" in page
    assert ":py:func:`nslib.sensitivity.neuron_sensitivity`" in (tmp_path / "api" / "nslib.md").read_text()


def test_data_pages_carry_each_checkpoints_sha256_and_the_shipped_data_licence(tmp_path):
    from nslib.checkpoints import CHECKPOINT_DIR, pretrained_names
    from nslib.data import sha256sum

    pages = site_pages.write_data_pages(ROOT, tmp_path)
    assert len(pages) == 4 + len(pretrained_names())
    for name in pretrained_names():
        text = (tmp_path / "data" / "checkpoints" / f"{name}.md").read_text()
        assert sha256sum(CHECKPOINT_DIR / f"{name}.pt") in text and "`smallcnn`" in text
    mnist5k = (tmp_path / "data" / "mnist5k.md").read_text()
    assert sha256sum(ROOT / "data" / "mnist5k.npz") in mnist5k and "CC BY-SA 3.0" in mnist5k
    assert "`x_train` (4000, 28, 28)" in mnist5k


def test_results_page_is_the_run_report_or_says_how_to_make_every_figure(tmp_path):
    from test_newcomer import FIGURES

    site_pages.write_results_page(tmp_path / "none", None)
    how = (tmp_path / "none" / "results" / "index.md").read_text()
    assert "make site RESULTS=results" in how and all(f"`{name}`" in how for name in FIGURES)
    run = tmp_path / "run"
    run.mkdir()
    (run / "REPORT.md").write_text("# nslib: reproduction report\n\n![e3_ablation.png](e3_ablation.png)\n")
    (run / "e3_ablation.png").write_bytes(b"\x89PNG")
    assert site_pages.write_results_page(tmp_path / "with", run) == ["e3_ablation.png"]
    assert (tmp_path / "with" / "results" / "e3_ablation.png").exists()


# --- two real builds ----------------------------------------------------------------------------

def _build(out: Path, *args: str) -> Path:
    missing = [name for name in ("sphinx", "myst_nb", "sphinx_book_theme", "sphinx_design", "sphinx-mathjax-offline")
               if importlib.util.find_spec(name) is None]
    if missing:
        _skip_or_fail(f"the site's tools are not installed ({', '.join(missing)}): pip install -e '.[site]'")
    result = subprocess.run([sys.executable, "site/build_site.py", "--out", str(out), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert re.search(r"^site: \d+ pages in ", result.stdout, re.M), result.stdout
    return out


@pytest.fixture(scope="module")
def public_site(tmp_path_factory) -> Path:
    """The site with a repository URL (in a copy of pyproject.toml) and a JupyterHub."""
    folder = tmp_path_factory.mktemp("public")
    text = (ROOT / "pyproject.toml").read_text()
    (folder / "pyproject.toml").write_text(f'{text}\n[project.urls]\nRepository = "{TEST_URL}"\n')
    return _build(folder / "site", "--pyproject", str(folder / "pyproject.toml"), "--hub", TEST_HUB)


def _fake_run(folder: Path) -> Path:
    """A results folder as ``reproduce`` writes it (``write_report``'s layout), with one figure and one table."""
    import matplotlib.pyplot as plt

    folder.mkdir()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(folder / "e3_ablation.png")
    plt.close(fig)
    (folder / "e3_ablation.csv").write_text("k,accuracy\n1,0.5\n")
    (folder / "REPORT.md").write_text(
        "# nslib: reproduction report\n\n## E3: neuron stabilisation and deactivation\n\n"
        "Described in `docs/experiments.md#e3-ablation`.\n\nThe finding.\n\n"
        "- table: [`e3_ablation.csv`](e3_ablation.csv)\n![e3_ablation.png](e3_ablation.png)\n")
    return folder


@pytest.fixture(scope="module")
def private_site(tmp_path_factory) -> Path:
    """The site without solutions, from the repository's own pyproject.toml, with a run's results."""
    folder = tmp_path_factory.mktemp("private")
    return _build(folder / "site", "--private", "--results", str(_fake_run(folder / "results")))


@pytest.mark.slow
def test_a_runs_report_is_the_results_page_with_its_figure_and_table(private_site):
    page = (private_site / "results" / "index.html").read_text(encoding="utf-8")
    assert "reproduction report" in page and re.search(r'<img[^>]+src="[^"]*e3_ablation\.png"', page)
    table = re.search(r'href="([^"]*e3_ablation\.csv)"', page)
    assert table and (private_site / "results" / table.group(1)).resolve().read_text() == "k,accuracy\n1,0.5\n"


class _Text(HTMLParser):
    """A page's text as a reader gets it (folded parts included), without scripts and styles."""

    def __init__(self):
        super().__init__()
        self.parts, self.hidden = [], 0

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in ("script", "style")

    def handle_endtag(self, tag):
        self.hidden -= tag in ("script", "style")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def _page_text(path: Path) -> str:
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return re.sub(r"\s+", " ", "".join(parser.parts))


def _site_text(site: Path, skip: str = "") -> str:
    return "\n".join(_page_text(p) for p in sorted(site.rglob("*.html")) if not (skip and skip in p.parts))


def _secrets() -> tuple[list[str], list[str]]:
    """Text only a solution holds: each solution line not also in the student edition, and a
    stretch of plain words of each instructor answer."""
    code, prose = [], []
    for name in LESSONS:
        notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        student = "\n".join(c.source for c in nbformat.read(ROOT / "student" / name, as_version=4).cells)
        for i in exercise_cells(notebook):
            block = notebook.cells[i].source.split(BEGIN, 1)[1].split(END, 1)[0]
            code += [line.strip() for line in block.splitlines() if len(line.strip()) >= 16
                     and line.strip() not in student]
        for cell in notebook.cells:
            if cell.cell_type == "markdown" and cell.source.startswith(ANSWER):
                runs = re.findall(r"[A-Za-z][A-Za-z ,;]{40,}[A-Za-z]", cell.source.removeprefix(ANSWER))
                prose.append(max(runs, key=len))
    return code, prose


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(text))


@pytest.mark.slow
def test_the_public_site_holds_each_solution_and_answer_and_the_private_site_none(public_site, private_site):
    code, prose = _secrets()
    assert len(code) >= 20 and len(prose) >= len(LESSONS), (len(code), prose)
    public = _site_text(public_site)
    assert [s for s in code + prose if _normalised(s) not in public] == []  # the needles are real
    # The API reference comes from nslib's docstrings, which may state a task ("must return
    # (x - mean) / std") but hold no solution cell: every other page and file is searched.
    private = _site_text(private_site, skip=site_pages.API_DIR)
    assert [s for s in code + prose if _normalised(s) in private] == []
    files = [p for p in private_site.rglob("*") if p.is_file() and p.suffix in {".html", ".js", ".ipynb", ".txt", ".json"}
             and "mathjax" not in p.parts and site_pages.API_DIR not in p.relative_to(private_site).parts]
    leaked = [(str(p.relative_to(private_site)), s) for p in files for s in code
              if s in p.read_text(encoding="utf-8", errors="replace")]
    assert leaked == []
    assert "holds the answers" in _page_text(private_site / "docs" / "instructor.html")


@pytest.mark.slow
def test_without_a_repository_url_the_lessons_have_no_launch_buttons_and_say_why(private_site):
    for name in LESSONS:
        text = _page_text(private_site / "notebooks" / name.replace(".ipynb", ".html"))
        assert "No launch buttons:" in text and "[project.urls] Repository is unset" in text
        assert "Open in Colab" not in text and "mybinder.org" not in (private_site / "notebooks" / name.replace(
            ".ipynb", ".html")).read_text()


@pytest.mark.slow
def test_every_public_name_has_its_entry_on_the_api_pages(public_site):
    import importlib

    for modname in site_pages.public_modules():
        module = importlib.import_module(modname)
        page = (public_site / "api" / f"{modname}.html").read_text(encoding="utf-8")
        for name in site_pages.public_names(module):  # its entry here, or a link to where it is documented
            assert (f'id="{modname}.{name}"' in page or re.search(rf'href="[^"]*#[\w.]+\.{name}"', page)
                    or re.search(rf'href="{re.escape(getattr(getattr(module, name), "__name__", "-"))}.html"', page)), \
                f"{modname}.{name} has no entry on its API page"


# --- in a real browser --------------------------------------------------------------------------

class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def served(public_site):
    """The public site on a free port of 127.0.0.1 (Python's http.server); its address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(public_site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser_page(served):
    """A Chromium page whose every request off 127.0.0.1 is refused and recorded; console errors recorded."""
    if CHROMIUM is None:
        _skip_or_fail("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed (pip install playwright)")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as playwright:  # launch() gives chromium an empty --user-data-dir of its own
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.offsite, page.console_errors = [], []

        def refuse_offsite(route):
            if urlparse(route.request.url).hostname == "127.0.0.1":
                route.continue_()
            else:
                page.offsite.append(route.request.url)
                route.abort()

        page.route("**/*", refuse_offsite)
        page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(f"{page.url}: {msg.text}"))
        page.on("pageerror", lambda error: page.console_errors.append(f"{page.url}: {error}"))
        try:
            yield page
        finally:
            browser.close()


#: Every <img> of the page, made eager, after it decoded (or failed to): [src, naturalWidth].
_IMAGES_JS = """async () => Promise.all([...document.images].map(async (img) => {
    img.loading = "eager";
    try { await img.decode(); } catch (e) {}
    return [img.currentSrc || img.src, img.naturalWidth];
}))"""
#: The page's links (absolute, as the browser resolved them) and its element ids.
_LINKS_JS = """() => [[...document.querySelectorAll('a[href]')].map(a => a.href),
                     [...document.querySelectorAll('[id], a[name]')].map(e => e.id || e.name)]"""


def _visit(page, url: str) -> tuple[list[str], set[str], list]:
    page.goto(url, wait_until="load")
    page.wait_for_function("() => !window.MathJax || !MathJax.startup || MathJax.startup.promise", timeout=30_000)
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
    links, ids = page.evaluate(_LINKS_JS)
    return links, set(ids), page.evaluate(_IMAGES_JS)


def _crawl(page, start: str) -> dict:
    """Every page reachable from ``start`` through internal links: links, ids and images of each."""
    pages, queue = {}, [start]
    while queue:
        url = queue.pop()
        if url in pages:
            continue
        links, ids, images = _visit(page, url)
        pages[url] = {"links": links, "ids": ids, "images": images}
        for link in links:
            target = urldefrag(link)[0]
            if target.startswith(start.rsplit("/", 1)[0]) and target.endswith(".html") and target not in pages:
                queue.append(target)
    return pages


def _check_links(page, pages: dict, origin: str) -> int:
    """Every internal link resolves: its page was crawled (or the file is served) and its anchor exists."""
    checked, broken, files = 0, [], {}
    for url, found in pages.items():
        for link in found["links"]:
            if not link.startswith(origin):
                continue
            target, anchor = urldefrag(link)
            checked += 1
            if target in pages:
                if anchor and anchor not in pages[target]["ids"]:
                    broken.append(f"{url} -> {link} (no such anchor)")
            else:
                if target not in files:
                    files[target] = page.request.get(target).status
                if files[target] != 200:
                    broken.append(f"{url} -> {link} (HTTP {files[target]})")
    assert broken == [], broken
    return checked


@pytest.mark.slow
def test_the_site_in_a_browser(browser_page, served, public_site, capsys):
    page, start = browser_page, f"{served}/index.html"
    pages = _crawl(page, start)
    built = {f"{served}/{p.relative_to(public_site).as_posix()}" for p in public_site.rglob("*.html")
             if "_static" not in p.parts}  # the theme's template macros are no pages
    assert built - set(pages) == set(), "pages no link reaches from the landing page"
    links = _check_links(page, pages, served)
    images = [(url, src) for url, found in pages.items() for src, width in found["images"]]
    assert [(url, src) for url, found in pages.items() for src, width in found["images"] if width == 0] == []
    assert page.console_errors == [] and page.offsite == [], (page.console_errors, page.offsite)
    lessons_seen = [url for url in pages if "/notebooks/" in url]
    assert len(lessons_seen) == len(LESSONS) and len(images) >= 20
    with capsys.disabled():
        print(f"\nsite in the browser: {len(pages)} pages, {links} internal links, {len(images)} images checked")


@pytest.mark.slow
def test_the_math_is_typeset_from_the_site_itself(browser_page, served):
    page = browser_page
    for path in ("docs/experiments.html", "notebooks/02_neuron_sensitivity.html"):
        _visit(page, f"{served}/{path}")
        assert page.locator("mjx-container").count() >= 5, f"{path}: no math typeset"
        assert page.evaluate("() => [...document.querySelectorAll('.math')].filter("
                             "m => !m.querySelector('mjx-container')).length") == 0, f"{path}: math left raw"
    assert page.offsite == []


@pytest.mark.slow
def test_the_search_finds_neuron_sensitivity(browser_page, served):
    page = browser_page
    page.goto(f"{served}/search.html?q=neuron_sensitivity", wait_until="load")
    result = page.locator("#search-results ul.search li a").first
    result.wait_for(timeout=30_000)
    hrefs = page.eval_on_selector_all("#search-results ul.search li a", "as => as.map(a => a.href)")
    assert any("nslib.sensitivity.neuron_sensitivity" in href for href in hrefs), hrefs


@pytest.mark.slow
def test_each_lesson_has_its_launch_buttons_and_its_student_edition(browser_page, served):
    page = browser_page
    for name in LESSONS:
        _visit(page, f"{served}/notebooks/{name.replace('.ipynb', '.html')}")
        buttons = dict(page.eval_on_selector_all(".launch-buttons a", "as => as.map(a => [a.textContent.trim(), a.href])"))
        path = f"student/{name}"
        assert buttons.get("Open in Colab") == launch.colab_url(TEST_URL, path), buttons
        assert buttons.get("Launch on Binder") == launch.binder_url(TEST_URL, path), buttons
        assert buttons.get("Open on JupyterHub") == launch.hub_url(TEST_HUB, TEST_URL, path), buttons
        download = page.request.get(buttons["Download the student edition"])
        assert download.ok and download.body() == (ROOT / path).read_bytes()


@pytest.mark.slow
def test_solutions_are_folded_until_clicked_and_the_explorer_is_no_repr(browser_page, served):
    page = browser_page
    _visit(page, f"{served}/notebooks/01_attacks.html")
    solution = page.locator("details.hide:has(summary:has-text('Show the solution'))").first
    assert not solution.locator("pre").first.is_visible()
    solution.locator("summary").click()
    assert solution.locator("pre").first.is_visible()
    answer = page.locator("details.instructor-answer").first
    assert answer.get_attribute("open") is None and not answer.locator("p").first.is_visible()
    _visit(page, f"{served}/notebooks/03_sensitive_neurons_and_ablation.html")
    text = page.inner_text("main")
    assert "VBox(" not in text and "Explorer(" not in text
    assert site_lessons.WIDGET_NOTE.strip("*").split(":")[0] in text or page.locator("img[alt*='explorer']").count() == 1


@pytest.mark.slow
def test_the_api_page_shows_neuron_sensitivity_and_screenshots(browser_page, served, capsys):
    import inspect

    from nslib.sensitivity import neuron_sensitivity

    page = browser_page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _visit(page, f"{served}/api/nslib.sensitivity.html")
    entry = page.locator('[id="nslib.sensitivity.neuron_sensitivity"]')
    signature = entry.inner_text()
    for parameter in inspect.signature(neuron_sensitivity).parameters:
        assert parameter in signature, (parameter, signature)
    entry.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "api.png"))
    _visit(page, f"{served}/index.html")
    page.screenshot(path=str(SCREENSHOTS / "landing.png"))
    _visit(page, f"{served}/notebooks/02_neuron_sensitivity.html")
    page.screenshot(path=str(SCREENSHOTS / "lesson.png"))
    with capsys.disabled():
        print(f"\nscreenshots: {SCREENSHOTS}/landing.png, lesson.png, api.png")
