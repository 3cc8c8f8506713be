"""The lessons as the website shows them: each notebook of ``notebooks/`` with its stored outputs.

Nothing is re-executed. Each lesson page gets, under its title, a row of launch buttons (Colab,
Binder, a JupyterHub; built by ``nslib.launch`` from the one repository URL) and a download of its
student edition. Solutions and instructor answers are

- on the public site, behind a click: each exercise shows the student's version of the cell (the
  stub), then the full solution folded ("Show the solution"); each answer is a closed dropdown;
- on the private site (``private=True``), gone: the stub only, no answer, in no file of the site.

The saved view of the sensitivity explorer (a widget that needs a live kernel) is replaced by its
picture where the output carries one, else by a note on how to run it live.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from nslib import launch
from nslib.editions import ANSWER, STUDENT_DIR, drop_test_markers, exercise_cells, strip_solutions

#: The output type of a saved widget view; it renders nothing without the widget's live state.
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: What a lesson shows where a widget view had no picture to replace it.
WIDGET_NOTE = ("*The interactive explorer runs only in a live notebook: open this lesson in Jupyter "
               "(`make lab`, Colab or Binder) and run this cell.*")
#: The launch links the notebooks and the README carry (badges served by Colab and Binder, which an
#: offline site cannot show): the site has its own buttons.
LAUNCH_BLOCK = re.compile(rf"\n*{re.escape(launch.LINKS_START)}.*?{re.escape(launch.LINKS_END)}", re.S)
#: Per-cell settings MyST-NB reads: the words on the toggles of folded cells.
_SOLUTION_PROMPTS = {"code_prompt_show": "Show the solution", "code_prompt_hide": "Hide the solution"}
_INSTALL_PROMPTS = {"code_prompt_show": "Show the install cell", "code_prompt_hide": "Hide the install cell"}


@dataclass(frozen=True)
class Launch:
    """Where the launch buttons point: the repository ``url`` (``None`` while unset, with ``reason``
    saying why) and a JupyterHub's address ``hub`` (``None``: no JupyterHub button)."""

    url: str | None
    hub: str | None = None
    reason: str | None = None

    def links(self, path: str) -> list[tuple[str, str]]:
        """``(label, address)`` of the buttons for the notebook at ``path`` (from the repository root)."""
        if not self.url:
            return []
        links = [("Open in Colab", launch.colab_url(self.url, path)),
                 ("Launch on Binder", launch.binder_url(self.url, path))]
        if self.hub:
            links.append(("Open on JupyterHub", launch.hub_url(self.hub, self.url, path)))
        return [(label, address) for label, address in links if address]  # Colab opens GitHub only


def buttons_markdown(how: Launch, name: str, folder: str = "..") -> str:
    """The row under a lesson's title: the launch buttons of its student edition and the student
    edition's download (``folder``: the repository root, relative to the page); while the
    repository URL is unset, a line saying why there are no launch buttons."""
    links = [f"[{label}]({address}){{.launch-button}}" for label, address in how.links(f"{STUDENT_DIR}/{name}")]
    download = f"{{download}}`Download the student edition <{folder}/{STUDENT_DIR}/{name}>`"
    row = ":::{container} launch-buttons\n" + " ".join([*links, download]) + "\n:::"
    if not how.url:
        row += f"\n\n*No launch buttons: {how.reason}*"
    return row


def _widget_free(output) -> dict:
    """``output`` without a saved widget view: its picture if it has one, else :data:`WIDGET_NOTE`."""
    data = output.get("data", {})
    if WIDGET_VIEW not in data:
        return output
    rest = {mime: value for mime, value in data.items() if mime != WIDGET_VIEW}
    if not ({"image/png", "text/html"} & set(rest)):
        rest = {"text/markdown": WIDGET_NOTE, "text/plain": WIDGET_NOTE}
    return nbformat.from_dict({**output, "data": rest})


#: A relative link to a Markdown page, as a computed Markdown output writes it: ``](../docs/x.md#anchor)``.
_PAGE_LINK = re.compile(r"\]\(((?![a-z]+:)[^)#\s]+)\.md(#[^)\s]*)?\)")


def _page_links(output) -> dict:
    """``output`` with its Markdown's links to ``.md`` pages pointing at their ``.html`` pages: Sphinx
    resolves the links of the notebook's own Markdown cells, but an output is rendered as it is."""
    text = output.get("data", {}).get("text/markdown")
    if not isinstance(text, str) or not _PAGE_LINK.search(text):
        return output
    html = _PAGE_LINK.sub(lambda m: f"]({m.group(1)}.html{m.group(2) or ''})", text)
    return nbformat.from_dict({**output, "data": {**output["data"], "text/markdown": html}})


def _answer_dropdown(source: str) -> str:
    """An instructor answer folded into a closed dropdown (sphinx-design)."""
    body = source.removeprefix(ANSWER).strip()
    return f"::::{{dropdown}} Instructor answer\n:class-container: instructor-answer\n\n{body}\n::::"


def _tag(cell, tag: str, prompts: dict | None = None) -> None:
    cell.metadata.setdefault("tags", [])
    if tag not in cell.metadata["tags"]:
        cell.metadata["tags"].append(tag)
    if prompts:
        cell.metadata["mystnb"] = {**cell.metadata.get("mystnb", {}), **prompts}


def site_notebook(notebook, name: str, how: Launch, private: bool = False):
    """The lesson page's notebook, from the instructor edition ``notebook`` (not changed) of
    ``notebooks/<name>``: see the module's docstring."""
    notebook = nbformat.from_dict(notebook)
    exercises = set(exercise_cells(notebook))
    cells = []
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown" and cell.source.startswith(ANSWER):
            if not private:
                cell.source = _answer_dropdown(cell.source)
                cells.append(cell)
            continue
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        if launch.is_install_cell(cell):
            _tag(cell, "hide-input", _INSTALL_PROMPTS)
        cell.outputs = [_page_links(_widget_free(output)) for output in cell.outputs]
        if i in exercises:
            stub = nbformat.v4.new_code_cell(drop_test_markers(strip_solutions(cell.source)))
            cells.append(stub)
            if private:
                continue
            _tag(cell, "hide-input", _SOLUTION_PROMPTS)
        cell.source = drop_test_markers(cell.source)
        cells.append(cell)
    heading, _, rest = LAUNCH_BLOCK.sub("", cells[0].source).rstrip().partition("\n")
    cells[0].source = f"{heading}\n\n{buttons_markdown(how, name)}\n\n{rest.strip()}"  # the buttons under the title
    notebook.cells = cells
    return notebook


def stage_lessons(root: Path, target: Path, how: Launch, private: bool = False) -> list[str]:
    """Write every lesson page's notebook into ``target/notebooks`` and copy the student edition
    into ``target/student`` (the downloads); returns the lessons' file names."""
    names = []
    for folder in ("notebooks", str(STUDENT_DIR)):
        (target / folder).mkdir(parents=True, exist_ok=True)
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = site_notebook(nbformat.read(path, as_version=4), path.name, how, private)
        nbformat.write(notebook, target / "notebooks" / path.name)
        (target / STUDENT_DIR / path.name).write_bytes((root / STUDENT_DIR / path.name).read_bytes())
        names.append(path.name)
    return names
