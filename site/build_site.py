"""Build the course's website: ``make site`` (``make site-private`` leaves the solutions out).

    python site/build_site.py [--out build/site] [--private] [--results results] [--hub URL] [--pyproject FILE]

Stages the site's sources in ``<out>-work/src``, laid out as the repository is (``README.md``,
``docs/``, ``notebooks/``, ``student/``, ``data/``, ``scripts/``), so the relative links between the docs, the
notebooks and the README work on the site as they do on a code host; adds the landing page and the
generated pages (``site_pages.py``: API reference, data catalogue, results); then runs Sphinx with
every warning an error. Nothing is executed and nothing is downloaded. Run from the repository root.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import site_pages  # noqa: E402
import site_lessons  # noqa: E402

#: The docs the site shows, beside the lessons (docs/instructor.md: not on the private site).
DOCS = ("experiments", "evaluation", "gpu", "instructor", "publishing")
#: docs/instructor.md on the private site: it holds the answers.
PRIVATE_INSTRUCTOR = """# Instructor guide

This copy of the course's website leaves out the solutions, and so the instructor guide too: it
holds the answers to every open question. It is in the course's repository, `docs/instructor.md`,
with grading (nbgrader), lesson plans, common mistakes and running the course on a JupyterHub.
"""
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python site/build_site.py", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="the site's folder (default build/site)")
    parser.add_argument("--private", action="store_true", help="leave out the solutions and the instructor guide")
    parser.add_argument("--results", type=Path, help="a folder written by `python -m nslib reproduce` to show")
    parser.add_argument("--hub", help="a JupyterHub's address, e.g. https://hub.example.edu: a button per lesson")
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml",
                        help="where the repository's address is read ([project.urls] Repository)")
    args = parser.parse_args(argv)
    if args.results is not None and not (args.results / "REPORT.md").is_file():
        parser.error(f"--results {args.results}: no REPORT.md there; run `make reproduce` first")
    if args.hub and not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", args.hub):
        parser.error(f"--hub {args.hub!r} is not an address; write it as https://hub.example.edu")
    return args


def lessons_table(names: list[str], titles: dict[str, str], how: site_lessons.Launch) -> str:
    """The README's table of notebooks, each linked to its lesson page, with a column to open it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The notebooks", 1)[1].lstrip("\n")
    rows = section.split("\n\n", 1)[0].splitlines()  # the first paragraph after the heading: the table
    if not rows or len(rows) - 2 != len(names):
        raise ValueError(f"the README's notebook table has {max(len(rows) - 2, 0)} rows for {len(names)} notebooks")
    out = [rows[0] + " open |", rows[1] + "---|"]
    for row in rows[2:]:
        name = re.match(r"\|\s*`([^`]+\.ipynb)`", row).group(1)
        opens = [f"[{label.split()[-1]}]({address})" for label, address in how.links(f"student/{name}")]
        opens.append(f"{{download}}`student edition <student/{name}>`")
        row = row.replace(f"`{name}`", f"[{titles[name]}](notebooks/{name})", 1)
        out.append(f"{row} {' · '.join(opens)} |")
    return "\n".join(out) + "\n"


def how_to_start(how: site_lessons.Launch, private: bool) -> str:
    """The landing page's "How to start": read here, run locally, Colab and Binder, a JupyterHub."""
    clone = f"git clone {how.url}.git && cd {how.url.rsplit('/', 1)[1]}" if how.url else \
        "git clone <address of the course repository> && cd <its folder>"
    lines = ["- **Read it here.** Each lesson page shows the notebook as it last ran: its figures, tables and "
             "computed verdicts. " + ("Its solutions are not on this copy of the site." if private else
                                      "Its solutions are folded: click *Show the solution* once you have tried."),
             f"- **On your machine** (Python 3.10+, `make`; a CPU is enough):\n\n  ```bash\n  {clone}\n"
             "  make lab          # installs everything into .venv, opens the student edition in JupyterLab\n  ```\n\n"
             "  Without `make`: `pip install \".[course]\"`, then `jupyter lab student/`. "
             "[The README](README.md) says more.",
             "- **Download a notebook**: each lesson's student edition is in the table above and at the top of "
             "its page; it installs the course's package in its first cell where it is missing."]
    if how.url:
        lines.append("- **Colab or Binder**: the links in the table above (and the buttons on each lesson) open "
                     "the student edition there, nothing to install.")
    else:
        lines.append(f"- **Colab or Binder**: no links on this site: {how.reason}")
    guide = "" if private else " How to set one up: [the instructor guide](docs/instructor.md#6-running-the-course-on-a-shared-jupyterhub)."
    if how.hub and how.url:
        lines.append(f"- **Your JupyterHub** (`{how.hub}`): the *Hub* links open the lesson there (nbgitpuller)." + guide)
    else:
        lines.append("- **A JupyterHub**: build the site with the hub's address, `make site HUB_URL=https://hub.example.edu`, "
                     "and each lesson gets a button that opens it there (it needs the repository's address too)." + guide)
    return "\n".join(lines) + "\n"


def landing_page(names: list[str]) -> str:
    """``index.md``: ``site/index.md`` (whose includes read the README and ``_generated/``) and the site's tables of contents."""
    def toctree(caption: str, entries: list[str]) -> str:
        return f"```{{toctree}}\n:caption: {caption}\n:hidden:\n\n" + "\n".join(entries) + "\n```\n"

    return "\n".join([(HERE / "index.md").read_text(encoding="utf-8"),
                      toctree("Lessons", [f"notebooks/{Path(n).stem}" for n in names]),
                      toctree("The course's reference", [f"docs/{d}" for d in DOCS]),
                      toctree("Results and data", ["results/index", "data/index"]),
                      toctree("The package", ["api/index", "README"])])


def stage(args: argparse.Namespace, src: Path) -> None:
    """Lay out the site's sources in ``src``: see the module's docstring."""
    from nslib import __version__, launch

    url = launch.repository_url(args.pyproject)
    how = site_lessons.Launch(url, args.hub, launch.why_no_links(args.pyproject))
    shutil.rmtree(src, ignore_errors=True)
    (src / "docs").mkdir(parents=True)
    (src / "_generated").mkdir()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (src / "README.md").write_text(site_lessons.LAUNCH_BLOCK.sub("", readme), encoding="utf-8")
    for doc in DOCS:
        text = PRIVATE_INSTRUCTOR if args.private and doc == "instructor" else \
            (ROOT / "docs" / f"{doc}.md").read_text(encoding="utf-8")
        (src / "docs" / f"{doc}.md").write_text(text, encoding="utf-8")
    names = site_lessons.stage_lessons(ROOT, src, how, args.private)
    # the scripts a lesson or a doc links to become downloads (MyST turns a link to a file that is no page into one)
    shutil.copytree(ROOT / "scripts", src / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    titles = {name: _title(src / "notebooks" / name) for name in names}
    site_pages.write_api_pages(src)
    site_pages.write_data_pages(ROOT, src)
    site_pages.write_results_page(src, args.results)
    (src / "_generated" / "lessons.md").write_text(lessons_table(names, titles, how), encoding="utf-8")
    (src / "_generated" / "start.md").write_text(how_to_start(how, args.private), encoding="utf-8")
    (src / "index.md").write_text(landing_page(names), encoding="utf-8")
    shutil.copytree(HERE / "_static", src / "_static")
    shutil.copyfile(HERE / "conf.py", src / "conf.py")
    settings = {"version": __version__, "repository": url or ""}
    (src / "site.json").write_text(json.dumps(settings, indent=1), encoding="utf-8")


def _title(notebook: Path) -> str:
    """A notebook's title: the first line of its first cell, without the ``#``."""
    import nbformat

    return nbformat.read(notebook, as_version=4).cells[0].source.split("\n")[0].lstrip("#").strip()


def build(args: argparse.Namespace) -> int:
    """Stage the sources, run Sphinx (warnings are errors); Sphinx's exit status."""
    from sphinx.cmd.build import build_main

    work = args.out.with_name(args.out.name + "-work")
    stage(args, work / "src")
    shutil.rmtree(args.out, ignore_errors=True)
    return build_main(["-b", "html", "-W", "--keep-going", "-q", "-j", "auto", "-d", str(work / "doctrees"),
                       str(work / "src"), str(args.out)])


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    try:
        status = build(args)
    except site_pages.MissingDocstrings as err:
        print(f"site: error: {err}", file=sys.stderr)
        return 2
    if status == 0:
        pages = sum(1 for page in args.out.rglob("*.html") if "_static" not in page.parts)
        print(f"site: {pages} pages in {args.out} ({time.monotonic() - start:.0f} s)"
              + (", without solutions" if args.private else ""))
    return status


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
