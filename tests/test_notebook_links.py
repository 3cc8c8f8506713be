"""Every relative link of every notebook, in both editions, opens where students read it.

`make lab` (and `make lab-instructor`) roots JupyterLab at the repository and opens one edition's
folder, so a link is resolved from the notebook's folder inside the served tree: it must stay inside
the repository and name a file that is there. A link to a section of a Markdown page must name a
heading's anchor as a code host (and the course's website) makes it, and the page must carry the same
id as an HTML anchor: JupyterLab's own heading ids are the heading's text with '-' for spaces
(``E3:-Ablation``), so only that anchor scrolls the lab's Markdown preview to the section.
"""
import re
from pathlib import Path

import nbformat
import pytest

from test_packaging import _anchors

ROOT = Path(__file__).resolve().parent.parent
EDITIONS = ("notebooks", "student")
#: ``[text](target)`` in Markdown, in a markdown cell or in a string a code cell renders as Markdown.
_LINK = re.compile(r"\[[^\]\n]*\]\(([^()\s]+)\)")
#: An HTML anchor the lab can scroll to: ``<a id="e3-ablation"></a>``.
_HTML_ANCHOR = re.compile(r'<a id="([^"]+)"></a>')


def _served_root() -> Path:
    """The folder `make lab` serves: its ``--ServerApp.root_dir``, relative to the repository."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^LAB := .*--ServerApp\.root_dir=(\S+)", makefile, re.MULTILINE)
    assert match, "the Makefile's LAB command names no --ServerApp.root_dir"
    return (ROOT / match.group(1)).resolve()


def _relative_links():
    """``(notebook path, cell index, target)`` of every link that is not a web address or mail."""
    for edition in EDITIONS:
        for path in sorted((ROOT / edition).glob("*.ipynb")):
            for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
                for target in _LINK.findall(cell.source):
                    if not re.match(r"[a-z]+:", target):
                        yield path.relative_to(ROOT), index, target


LINKS = list(_relative_links())


def test_the_notebooks_link_to_the_docs_and_to_each_other():
    targets = {target.split("#")[0] for _, _, target in LINKS}
    assert {"../docs/experiments.md", "../docs/evaluation.md", "01_attacks.ipynb"} <= targets, sorted(targets)
    assert {path.parts[0] for path, _, _ in LINKS} == set(EDITIONS)


@pytest.mark.parametrize("notebook, cell, target", LINKS, ids=[f"{p.name}[{i}]:{t}" for p, i, t in LINKS])
def test_a_link_resolves_where_the_lab_serves_it(notebook, cell, target):
    file, _, anchor = target.partition("#")
    resolved = (ROOT / notebook).parent.joinpath(file).resolve() if file else ROOT / notebook
    served = _served_root()
    assert resolved.is_relative_to(served), f"{target} leaves the folder the lab serves ({served})"
    assert resolved.is_file(), f"{target} names no file ({resolved})"
    if anchor:
        text = resolved.read_text(encoding="utf-8")
        if resolved.suffix == ".ipynb":
            text = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells if c.cell_type == "markdown")
        assert anchor in _anchors(text), f"{target}: no heading of {resolved.name} has the anchor #{anchor}"
        if resolved.suffix == ".md":
            assert anchor in _HTML_ANCHOR.findall(text), (
                f'{target}: add <a id="{anchor}"></a> above the heading, so the lab scrolls to it')


def test_an_html_anchor_stands_right_above_its_heading():
    """An anchor the lab scrolls to is the one a code host gives the next heading: never a stale one."""
    for page in sorted((ROOT / "docs").glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            for anchor in _HTML_ANCHOR.findall(line):
                heading = next((l for l in lines[number + 1:] if l.strip()), "")
                assert re.match(r"#{1,6} ", heading) and _anchors(heading) == {anchor}, (
                    f"{page.name}:{number + 1}: <a id={anchor!r}> is not above the heading it names")
