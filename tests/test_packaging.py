"""pyproject.toml is the one list of dependencies; environment.yml must mirror it."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"], project["optional-dependencies"]["test"]


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


def test_runtime_dependencies_are_the_agreed_ones():
    runtime, _ = _pyproject_requirements()
    names = {re.split(r"[<>=!~ \[]", r)[0].lower() for r in runtime}
    assert names == {"torch", "torchvision", "numpy", "matplotlib", "seaborn", "tqdm",
                     "ipywidgets", "jupyterlab", "pyautoattack"}


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
