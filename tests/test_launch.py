"""Launch links (Colab, Binder, JupyterHub) and the install cell come from the one repository URL,
``[project.urls] Repository`` in pyproject.toml; none is rendered, and none invented, while it is unset."""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nslib import editions, launch

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
URL = "https://github.com/some-org/neuron-course"
LINK = re.compile(r"https?://[^\s)\"'<>]+")


def _pyproject(tmp_path, url_lines: str) -> Path:
    text = (ROOT / "pyproject.toml").read_text()
    path = tmp_path / "pyproject.toml"
    path.write_text(text.replace("[project.optional-dependencies]", f"{url_lines}\n[project.optional-dependencies]", 1))
    return path


def test_unset_url_renders_no_link_and_says_why(tmp_path):
    path = _pyproject(tmp_path, "")
    assert launch.repository_url(path) is None
    assert "[project.urls] Repository is unset" in launch.why_no_links(path)
    cell = launch.install_cell_source(None)
    assert "http" not in cell and "pip install -e '.[course]'" in cell and ".whl" in cell
    assert "http" not in launch.readme_block(None, ["student/00_setup_and_data.ipynb"])


def test_set_url_is_read_and_a_malformed_one_is_refused(tmp_path):
    path = _pyproject(tmp_path, f'[project.urls]\nRepository = "{URL}.git"\n')
    assert launch.repository_url(path) == URL and launch.why_no_links(path) is None
    bad = _pyproject(tmp_path, '[project.urls]\nRepository = "github.com/some-org"\n')
    with pytest.raises(ValueError, match="https://github.com/OWNER/NAME"):
        launch.repository_url(bad)


def test_link_forms_for_github_gitlab_and_other_hosts():
    path = "student/01_attacks.ipynb"
    assert launch.colab_url(URL, path) == \
        "https://colab.research.google.com/github/some-org/neuron-course/blob/main/student/01_attacks.ipynb"
    assert launch.binder_url(URL, path) == \
        "https://mybinder.org/v2/gh/some-org/neuron-course/main?labpath=student%2F01_attacks.ipynb"
    assert launch.colab_url("https://gitlab.com/a/b", path) is None  # Colab opens GitHub only
    assert launch.binder_url("https://gitlab.com/a/b", path).startswith("https://mybinder.org/v2/gl/a%2Fb/main?")
    assert "codeberg.org%2Fa%2Fb.git" in launch.binder_url("https://codeberg.org/a/b", path)
    hub = launch.hub_url("https://hub.example.edu/", URL, path)
    assert hub.startswith("https://hub.example.edu/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2F")
    assert "urlpath=lab%2Ftree%2Fneuron-course%2Fstudent%2F01_attacks.ipynb" in hub


def test_every_generated_link_follows_the_url(tmp_path):
    """Both editions and the README, generated with a URL set: every launch link names the repository
    and a notebook that exists at that path; the install cell installs from that repository."""
    source = tmp_path / "notebooks"
    source.mkdir()
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.write(launch.set_launch_cells(notebook, f"notebooks/{path.name}", URL), source / path.name)
    students = editions.write_student_edition(source, tmp_path / "student", url=URL)
    checked = 0
    for folder, files in (("notebooks", sorted(source.glob("*.ipynb"))), ("student", students)):
        for file in files:
            notebook = nbformat.read(file, as_version=4)
            install = notebook.cells[1]
            assert launch.is_install_cell(install)
            assert f'"nslib-course @ git+{URL}.git@main"' in install.source
            links = [link for link in LINK.findall(notebook.cells[0].source)
                     if ("colab.research" in link or "mybinder.org" in link) and "badge" not in link]
            assert len(links) == 2, links  # Colab and Binder
            for link in links:
                assert "some-org/neuron-course" in link or "some-org%2Fneuron-course" in link, link
                assert f"{folder}/{file.name}" in link.replace("%2F", "/"), link
                assert (ROOT / folder / file.name).exists()
                checked += 1
    assert checked == 4 * len(NOTEBOOKS)
    readme = launch.set_readme_block((ROOT / "README.md").read_text(), URL,
                                     [f"student/{p.name}" for p in NOTEBOOKS])
    readme_links = [link for link in LINK.findall(readme) if "colab.research" in link and "badge" not in link]
    assert len(readme_links) == len(NOTEBOOKS) and all("some-org/neuron-course/blob/main/student/" in link
                                                        for link in readme_links)


def test_set_launch_cells_is_idempotent_and_removes_links_when_the_url_goes():
    notebook = nbformat.read(NOTEBOOKS[1], as_version=4)
    once = nbformat.writes(launch.set_launch_cells(nbformat.from_dict(notebook), "notebooks/x.ipynb", URL))
    twice = nbformat.writes(launch.set_launch_cells(nbformat.reads(once, as_version=4), "notebooks/x.ipynb", URL))
    assert once == twice
    gone = launch.set_launch_cells(nbformat.reads(once, as_version=4), "notebooks/x.ipynb", None)
    assert "colab" not in gone.cells[0].source and sum(launch.is_install_cell(c) for c in gone.cells) == 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_carry_the_current_launch_cells(path):
    notebook = nbformat.read(path, as_version=4)
    assert launch.is_install_cell(notebook.cells[1]), "run `python -m nslib clean-notebooks`"
    expected = launch.set_launch_cells(nbformat.from_dict(notebook), f"notebooks/{path.name}", launch.repository_url())
    assert nbformat.writes(expected) == nbformat.writes(notebook), "run `python -m nslib clean-notebooks`"


def test_readme_launch_block_is_current():
    text = (ROOT / "README.md").read_text()
    lessons = [f"student/{p.name}" for p in NOTEBOOKS]
    assert launch.set_readme_block(text, launch.repository_url(), lessons) == text, \
        "run `python -m nslib clean-notebooks`"


def test_install_cell_does_nothing_where_nslib_is_installed_and_explains_where_it_is_not(tmp_path):
    code = launch.install_cell_source(None)
    ok = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and not ok.stdout and not ok.stderr
    # a Python where nslib cannot be found (isolated, no site-packages): the message says how to install
    missing = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    assert missing.returncode == 1 and "From a clone of the course: pip install -e '.[course]'" in missing.stderr
