"""pyproject.toml is the one list of dependencies and environment.yml mirrors it; the Makefile does
what the README says; citations of the course's reference, docs/experiments.md, point at sections
that exist."""
import os
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


#: The extras environment.yml installs beside the runtime dependencies (every one pyproject.toml has).
MIRRORED_EXTRAS = {"course", "test", "classroom", "site"}


def _pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(extras) == MIRRORED_EXTRAS, f"a new extra {sorted(extras)}: mirror it in environment.yml"
    return project["dependencies"], [req for name in sorted(MIRRORED_EXTRAS) for req in extras[name]]


def _environment_pip_requirements():
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = []
    for line in lines[start + 1:]:
        match = re.match(r"^\s+- (\S.*)$", line)
        if match:
            reqs.append(match.group(1).strip())
        elif line.strip() and not line.strip().startswith("#"):
            break
    return reqs


def _normalise(req):
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_mirrors_pyproject():
    runtime, test = _pyproject_requirements()
    env = [r for r in _environment_pip_requirements() if not r.startswith("-e")]
    assert sorted(map(_normalise, env)) == sorted(map(_normalise, runtime + test))


def _names(requirements):
    """The project names, normalised as PEP 503 does (pip freeze writes ``sphinx_design`` for ``sphinx-design``)."""
    return {re.sub(r"[-_.]+", "-", re.split(r"[<>=!~ \[;]", r)[0]).lower() for r in requirements}


def test_runtime_dependencies_are_the_agreed_ones_and_no_notebook_server():
    """The library installs no notebook server (a Colab or JupyterHub user has one): the `course` extra does."""
    runtime, _ = _pyproject_requirements()
    assert _names(runtime) == {"torch", "torchvision", "numpy", "matplotlib", "seaborn", "tqdm", "pyautoattack"}
    course = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["course"]
    assert _names(course) == {"jupyterlab", "ipywidgets"}


def test_distribution_name_is_ours_and_the_import_name_stays_nslib():
    """`nslib` on PyPI is an unrelated project; the course installs as nslib-course and imports as nslib."""
    from nslib import launch

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == launch.DISTRIBUTION == "nslib-course"
    assert "pip install" in (ROOT / "README.md").read_text() and "nslib-course" in (ROOT / "README.md").read_text()


def test_make_installs_the_recorded_versions_and_make_lock_rerecords_them():
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line and ".lock-venv" not in line]
    assert installs and all("--constraint $(CONSTRAINTS)" in line for line in installs), installs
    assert "CONSTRAINTS := constraints.txt" in makefile and "\nlock:" in makefile
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==\S+", pin) for pin in pins), [p for p in pins if "==" not in p]
    pinned = _names(pins)
    runtime, extras = _pyproject_requirements()
    assert _names(runtime + extras) - pinned == set(), "constraints.txt lacks a dependency: run `make lock`"
    assert "torchattacks" in pinned and "nslib-course" not in pinned


def test_torchattacks_is_installed_without_its_dependencies():
    """Its metadata pins an old requests; the Makefile must install it with --no-deps."""
    makefile = (ROOT / "Makefile").read_text()
    line = next(line for line in makefile.splitlines() if "torchattacks" in line and "install" in line)
    assert "--no-deps" in line
    runtime, test = _pyproject_requirements()
    assert not any("torchattacks" in r for r in runtime + test)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci


def test_make_test_fast_leaves_out_the_slow_newcomer_test_and_make_test_keeps_it():
    import subprocess
    import sys

    def collected(*marker):
        result = subprocess.run([sys.executable, "-m", "pytest", "tests", "--collect-only", "-q",
                                 "-p", "no:cacheprovider", *marker], cwd=ROOT, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}

    fast_line = next(line for line in (ROOT / "Makefile").read_text().splitlines()
                     if "pytest" in line and "-m" in line and "slow" in line)
    assert '-m "not slow"' in fast_line
    assert "tests/test_newcomer.py" not in collected("-m", "not slow")
    assert "tests/test_newcomer.py" in collected()


def test_make_lab_opens_the_student_edition_and_lab_instructor_the_solutions():
    lines = (ROOT / "Makefile").read_text().splitlines()

    def recipe(target):
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
        return lines[start + 1].strip()

    assert "LAB := $(BIN)/jupyter lab --ServerApp.root_dir=." in lines  # the repository: ../docs/ links open
    assert recipe("lab") == "$(LAB) --ContentsManager.preferred_dir=student"
    assert recipe("lab-instructor") == "$(LAB) --ContentsManager.preferred_dir=notebooks"
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make lab-instructor" in readme


# --- citations of the course's reference, docs/experiments.md ---------------------------

#: Folders never scanned for citations: the environment, run outputs, git's own files.
_NOT_SOURCES = {".venv", "runs", "results", ".git", ".ipynb_checkpoints", "__pycache__", ".pytest_cache"}
#: The project's specification lives outside the repository; nothing in it may cite it.
_OUTSIDE_SPEC = "SPEC" + ".md"  # spelt in two parts so that this file does not cite it
#: A citation of a section: ``docs/experiments.md#<anchor>`` (or ``experiments.md#<anchor>`` from docs/).
_CITATION = re.compile(r"experiments\.md#([A-Za-z0-9_-]+)")


def _sources(*suffixes):
    """The repository's files with these suffixes, outside ``_NOT_SOURCES``, by path relative to the root."""
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in _NOT_SOURCES]  # never walk into .venv
        found += [Path(folder, name).relative_to(ROOT) for name in files if Path(name).suffix in suffixes]
    return sorted(found)


def _github_anchor(heading):
    """GitHub's anchor of a Markdown heading: lowercase, punctuation but '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(markdown):
    """The anchors of every heading of a Markdown text, code blocks skipped."""
    anchors, in_code = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            anchors.add(_github_anchor(line.lstrip("#")))
    return anchors


def test_github_anchor_follows_githubs_rules():
    assert _github_anchor(" E3: Ablation") == "e3-ablation"
    assert _github_anchor("E5: SNS vs baselines") == "e5-sns-vs-baselines"
    assert _github_anchor("Reference PGD-AT recipe") == "reference-pgd-at-recipe"
    assert _github_anchor("The paper's k_max") == "the-papers-k_max"


def test_nothing_cites_the_specification_outside_the_repository():
    """docs/experiments.md is the course's reference; a file citing the outside spec points nowhere."""
    citing = [str(path) for path in _sources(".py", ".md", ".ipynb")
              if _OUTSIDE_SPEC in (ROOT / path).read_text(encoding="utf-8")]
    assert not citing, f"{citing} cite {_OUTSIDE_SPEC}; cite a section of docs/experiments.md instead"


def test_every_cited_section_of_docs_experiments_exists():
    doc = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    anchors = _anchors(doc)
    assert {"e1-layer-sensitivity", "e3-ablation", "e7-sns-knobs", "sns-loss"} <= anchors
    missing = [(str(path), anchor) for path in _sources(".py", ".md", ".ipynb")
               for anchor in _CITATION.findall((ROOT / path).read_text(encoding="utf-8"))
               if anchor not in anchors]
    missing += [("docs/experiments.md", anchor) for anchor in re.findall(r"\]\(#([A-Za-z0-9_-]+)\)", doc)
                if anchor not in anchors]
    assert not missing, f"cited sections missing from docs/experiments.md (file, anchor): {missing}"


def test_every_cited_section_of_docs_gpu_exists():
    anchors = _anchors((ROOT / "docs" / "gpu.md").read_text(encoding="utf-8"))
    cited = [(str(path), anchor) for path in _sources(".py", ".md", ".ipynb")
             for anchor in re.findall(r"gpu\.md#([A-Za-z0-9_-]+)", (ROOT / path).read_text(encoding="utf-8"))]
    assert ("nslib/settings.py", "layers-of-each-setting") in cited
    missing = [(path, anchor) for path, anchor in cited if anchor not in anchors]
    assert not missing, f"cited sections missing from docs/gpu.md (file, anchor): {missing}"
