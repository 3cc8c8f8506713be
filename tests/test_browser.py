"""What a student meets in a real browser: JupyterLab on 127.0.0.1, driven through Debian's
Chromium by Playwright.

- Notebook 03 runs top to bottom, and its explorer shows live controls whose change redraws
  the figure.
- A student notebook runs to its end with its exercises unfilled.
- The lab is configured as ``make lab`` configures a student's (``nslib.classroom.write_student_lab``):
  nbgrader's Nbgrader menu offers the assignment list only, and no Create Assignment panel.

The notebooks are copied into a temporary folder first, so autosave cannot touch the repository.
Skipped (saying why) where Chromium or Playwright is missing; ``.ci/run`` installs both and sets
``NSLIB_BROWSER_TEST=required``, which turns that skip into a failure.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nslib.classroom import write_student_lab

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "nslib-browser-test"
#: How long a whole notebook may take to run in the browser (quick mode, a loaded 2-core machine).
RUN_TIMEOUT_S = 1200
#: The notebook in view: a page restores the tabs an earlier test opened, hidden behind it.
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    if CHROMIUM is None:
        return "Debian's chromium is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port of 127.0.0.1, serving copies of the notebooks; its URL."""
    reason = _missing()
    if reason:
        if os.environ.get("NSLIB_BROWSER_TEST") == "required":
            pytest.fail(f"the browser test must run here, but {reason}")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("lab")
    for edition in ("notebooks", "student"):
        shutil.copytree(ROOT / edition, folder / edition, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    student_lab = folder / "student-lab"   # as `make lab` sets it up
    write_student_lab(student_lab)
    settings = folder / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)  # every cell in the page, not only those in view
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={folder}",
         "--LabApp.news_url=", f"--LabApp.workspaces_dir={folder / 'workspaces'}", "--allow-root"],
        env={**os.environ, "NSLIB_QUICK": "1", "JUPYTERLAB_SETTINGS_DIR": str(folder / "lab-settings"),
             "JUPYTER_CONFIG_PATH": str(student_lab)}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start within 2 minutes")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def page(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            yield page
        finally:
            browser.close()


def _open(page, lab: str, path: str) -> None:
    page.goto(f"{lab}/lab/tree/{path}?token={TOKEN}")
    page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", state="attached", timeout=120_000)
    page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)


def _run_all(page) -> None:
    """Run every cell from the Run menu and wait until no cell is queued or running."""
    page.click("li.lm-MenuBar-item >> text=Run")
    page.click('li.lm-Menu-item[data-command="runmenu:run-all"]')
    # first the run must have begun (queued cells show [*]): right after the click the prompts are
    # still those of the last run and the kernel idle, which would read as "finished"
    page.wait_for_function(f"() => [...document.querySelectorAll('{PANEL} .jp-InputPrompt')].some(p => p.textContent.includes('*'))",
                           timeout=120_000, polling=100)
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{PANEL} .jp-InputPrompt')].every(p => !p.textContent.includes('*'))"
        " && document.querySelector('#jp-main-statusbar').textContent.includes('Idle')",
        timeout=RUN_TIMEOUT_S * 1000, polling=1000)


def _errors(page) -> list[str]:
    return page.eval_on_selector_all(f'{PANEL} .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
                                     "nodes => nodes.map(n => n.textContent)")


def test_notebook_03_runs_and_its_explorer_redraws(page, lab):
    _open(page, lab, "notebooks/03_sensitive_neurons_and_ablation.ipynb")
    _run_all(page)
    assert not [e for e in _errors(page) if "Error" in e], _errors(page)
    explorer = page.locator(f"{PANEL} .jp-OutputArea-output .widget-vbox, {PANEL} .jp-OutputArea-output .widget-box").first
    explorer.scroll_into_view_if_needed()
    controls = explorer.locator(".widget-dropdown select, .widget-slider, .widget-toggle-buttons")
    assert controls.count() >= 2, "the explorer shows no controls"
    figure = explorer.locator(".widget-output img").first
    before = figure.get_attribute("src")
    dropdown = explorer.locator(".widget-dropdown select").first  # the layer
    options = dropdown.locator("option").all_text_contents()
    dropdown.select_option(label=next(o for o in options if o != dropdown.input_value()))
    deadline = time.monotonic() + 120  # the Output widget replaces its <img>: poll the current one
    while figure.get_attribute("src") == before:
        assert time.monotonic() < deadline, "the explorer's figure did not redraw within 2 minutes"
        time.sleep(0.5)


def test_a_student_notebook_runs_to_its_end(page, lab):
    """Run All goes through a student notebook with its exercises unfilled: no cell shows an error,
    each test cell says in one line that its exercise is not written yet, and the last code cell ran."""
    _open(page, lab, "student/01_attacks.ipynb")
    _run_all(page)
    assert not [e for e in _errors(page) if "Error" in e], _errors(page)
    assert page.get_by_text("my_pgd is not written yet").count() == 1
    last = page.locator(f"{PANEL} .jp-CodeCell").last
    last.scroll_into_view_if_needed()
    assert re.fullmatch(r"\[\d+\]:", last.locator(".jp-InputPrompt").inner_text().strip())


def test_a_students_lab_hides_the_instructors_menus(page, lab):
    _open(page, lab, "student/00_setup_and_data.ipynb")
    tabs = page.eval_on_selector_all(".lm-TabBar-tab", "nodes => nodes.map(n => n.textContent)")
    assert "Create Assignment" not in tabs, tabs
    page.click("li.lm-MenuBar-item >> text=Nbgrader")
    items = page.locator(".lm-Menu:not(.lm-MenuBar) li.lm-Menu-item")
    items.first.wait_for()
    shown = [items.nth(i).inner_text().strip() for i in range(items.count()) if items.nth(i).is_visible()]
    assert shown == ["Assignment List"], shown
