"""A Python environment where nslib is the built wheel and no path of the checkout is importable.

``InstalledCourse.build(folder)`` builds the sdist and the wheel with ``python -m build`` (as a
release would), makes a fresh virtual environment, installs the wheel into it with
``--no-deps``, and lets it take the other dependencies (torch, ...) from the test environment's
site-packages through a ``.pth`` line: a path, not a site directory, so the test environment's
editable install of nslib (its ``.pth`` finder) is not loaded. Commands then run in an empty
folder outside the checkout, with ``PYTHONPATH`` unset.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class InstalledCourse:
    """The wheel, the environment it is installed in, and where nslib landed there."""

    wheel: Path
    sdist: Path
    python: Path
    package: Path

    @classmethod
    def build(cls, folder: Path) -> "InstalledCourse":
        dist = folder / "dist"
        run = subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
                             capture_output=True, text=True, timeout=900)
        if run.returncode != 0:
            raise RuntimeError(f"python -m build failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        wheel, sdist = next(dist.glob("*.whl")), next(dist.glob("*.tar.gz"))
        venv = folder / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
        python = venv / "bin" / "python"
        site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        (site / "test_environment_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                        "--no-index", str(wheel)], check=True, timeout=600, env=_without_checkout_env())
        package = Path(subprocess.run([str(python), "-c", "import nslib, os; print(os.path.dirname(nslib.__file__))"],
                                      capture_output=True, text=True, check=True, cwd=folder,
                                      env=_without_checkout_env()).stdout.strip())
        return cls(wheel, sdist, python, package)

    def run(self, args: list[str], cwd: Path, timeout: float = 1800, **env: str) -> subprocess.CompletedProcess:
        """Run ``python args...`` of the environment in ``cwd`` (an empty folder outside the checkout)."""
        return subprocess.run([str(self.python), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env={**_without_checkout_env(), **env})

    def kernel(self, folder: Path) -> str:
        """A Jupyter kernel of this environment, ``nslib-installed``, defined in ``folder``; its name. Put
        ``folder`` on ``JUPYTER_PATH`` and run notebooks with that kernel to run them against the wheel."""
        spec = folder / "kernels" / "nslib-installed"
        spec.mkdir(parents=True, exist_ok=True)
        argv = [str(self.python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "nslib (installed wheel)",
                                                      "language": "python"}))
        return "nslib-installed"

    def snapshot(self) -> dict[str, str]:
        """Every file of the installed package (bytecode caches aside), by relative path -> sha256."""
        return {str(path.relative_to(self.package)): hashlib.sha256(path.read_bytes()).hexdigest()
                for path in sorted(self.package.rglob("*"))
                if path.is_file() and "__pycache__" not in path.parts}


def _without_checkout_env() -> dict[str, str]:
    """os.environ without anything that would make the checkout importable, or nslib's settings but the
    device the tests run on (``NSLIB_DEVICE``, from tests/conftest.py)."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items()
            if k not in drop and (not k.startswith("NSLIB_") or k == "NSLIB_DEVICE")}
