"""Launch links: "Open in Colab", Binder and a JupyterHub, all from the one repository URL.

The course's public address is written once, as ``Repository`` under ``[project.urls]`` in
``pyproject.toml``. The notebooks' launch links and install cell, the README's lesson table
and the website's launch buttons are generated from it, so moving the repository means
editing that one line. While it is unset (the repository has no public address yet) no link
is rendered and no address is invented: :func:`why_no_links` says why, and the install cell
says how to install from a clone or a built wheel instead::

    [project.urls]
    Repository = "https://github.com/ORG/REPO"

Colab opens notebooks from GitHub only; Binder builds from any public git host, from the
files the repository already has (``environment.yml``); a JupyterHub button uses nbgitpuller.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

__all__ = ["DISTRIBUTION", "BRANCH", "repository_url", "colab_url", "binder_url", "hub_url",
           "launch_links_markdown", "install_cell_source", "why_no_links", "is_install_cell",
           "set_launch_cells", "readme_block", "set_readme_block"]

#: The name the package is installed by (``pip install nslib-course``); the import name is ``nslib``.
DISTRIBUTION = "nslib-course"
#: The branch the launch links open.
BRANCH = "main"
#: The key of ``[project.urls]`` that holds the repository's address.
URL_KEY = "Repository"


def repository_url(pyproject: str | Path | None = None) -> str | None:
    """The repository's public address, ``[project.urls] Repository``, or ``None`` while it is unset.

    Args:
        pyproject (path, optional): the ``pyproject.toml`` to read. Default: the checkout's, else
            (an installed package) the installed distribution's metadata.

    Raises:
        ValueError: the address is not an ``https://`` URL of a repository (``https://host/owner/name``).
    """
    if pyproject is None:
        candidate = Path(__file__).resolve().parent.parent / "pyproject.toml"
        url = _url_from_pyproject(candidate) if candidate.exists() else _url_from_metadata()
    else:
        url = _url_from_pyproject(Path(pyproject))
    if url is None:
        return None
    url = url.strip().rstrip("/").removesuffix(".git")
    if not re.fullmatch(r"https://[^/\s]+/[^/\s]+/[^/\s]+", url):
        raise ValueError(f"[project.urls] {URL_KEY} = {url!r} is not a repository address; write it as "
                         "https://github.com/OWNER/NAME (or another git host's https address).")
    return url


def _url_from_pyproject(path: Path) -> str | None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    project = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {})
    return project.get("urls", {}).get(URL_KEY)


def _url_from_metadata() -> str | None:
    from importlib import metadata

    try:
        entries = metadata.metadata(DISTRIBUTION).get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return None
    for entry in entries:
        label, _, url = entry.partition(",")
        if label.strip() == URL_KEY:
            return url.strip()
    return None


def _host_owner_name(url: str) -> tuple[str, str, str]:
    host, owner, name = url.removeprefix("https://").split("/")
    return host, owner, name


def colab_url(url: str, path: str, branch: str = BRANCH) -> str | None:
    """Google Colab's link to the notebook ``path`` (relative to the repository root); ``None``
    unless the repository is on GitHub, the only host Colab opens notebooks from."""
    host, owner, name = _host_owner_name(url)
    if host != "github.com":
        return None
    return f"https://colab.research.google.com/github/{owner}/{name}/blob/{branch}/{path}"


def binder_url(url: str, path: str, branch: str = BRANCH) -> str:
    """mybinder.org's link that builds the repository (from its ``environment.yml``) and opens ``path`` in JupyterLab."""
    host, owner, name = _host_owner_name(url)
    labpath = quote(path, safe="")
    if host == "github.com":
        return f"https://mybinder.org/v2/gh/{owner}/{name}/{branch}?labpath={labpath}"
    if host == "gitlab.com":
        return f"https://mybinder.org/v2/gl/{owner}%2F{name}/{branch}?labpath={labpath}"
    return f"https://mybinder.org/v2/git/{quote(url + '.git', safe='')}/{branch}?labpath={labpath}"


def hub_url(hub: str, url: str, path: str, branch: str = BRANCH) -> str:
    """A JupyterHub link (nbgitpuller) that clones or updates the repository in the user's home
    and opens ``path`` in JupyterLab; ``hub`` is the hub's address, e.g. ``https://hub.example.edu``."""
    name = _host_owner_name(url)[2]
    return (f"{hub.rstrip('/')}/hub/user-redirect/git-pull?repo={quote(url, safe='')}"
            f"&branch={branch}&urlpath={quote(f'lab/tree/{name}/{path}', safe='')}")


def launch_links_markdown(url: str, path: str, branch: str = BRANCH) -> str:
    """The badges line of a notebook or the README: Colab (GitHub only) and Binder for ``path``."""
    links = []
    colab = colab_url(url, path, branch)
    if colab:
        links.append(f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})")
    links.append(f"[![Launch on Binder](https://mybinder.org/badge_logo.svg)]({binder_url(url, path, branch)})")
    return " ".join(links)


def install_cell_source(url: str | None) -> str:
    """The first code cell of every notebook: installs the course's package where it is missing
    (Colab, a fresh kernel), does nothing where it is installed. Without a repository address it
    says how to install from a clone or a built wheel instead of guessing an address."""
    head = ("# Colab or a fresh environment: install the course's package if it is missing.\n"
            "# Where nslib is installed (make lab, a JupyterHub, Binder) this cell does nothing.\n"
            "import importlib.util\n\n"
            'if importlib.util.find_spec("nslib") is None:\n')
    if url:
        return head + f'    %pip install --quiet "{DISTRIBUTION} @ git+{url}.git@{BRANCH}"'
    return head + ('    raise ModuleNotFoundError(\n'
                   '        "nslib is not installed in this kernel. From a clone of the course: '
                   "pip install -e '.[course]' (or make lab); from a built wheel: "
                   "pip install 'nslib_course-<version>-py3-none-any.whl[course]'. Then restart the kernel.\")")


def why_no_links(pyproject: str | Path | None = None) -> str | None:
    """Why no launch link is rendered (``None`` when the repository address is set)."""
    if repository_url(pyproject) is not None:
        return None
    return (f"no launch links (Colab, Binder, JupyterHub): [project.urls] {URL_KEY} is unset in pyproject.toml, "
            "because the repository has no public address yet; set it there to render them.")


# --- the generated cells and blocks -------------------------------------------------------

#: The first line of the install cell (the notebook's first code cell).
INSTALL_HEADER = "# Colab or a fresh environment: install the course's package if it is missing."
#: The launch links sit at the end of a notebook's title cell, and in the README, between these lines.
LINKS_START = "<!-- launch links: generated from [project.urls] by `python -m nslib clean-notebooks` -->"
LINKS_END = "<!-- end of launch links -->"
_LINKS_BLOCK = re.compile(rf"\n*{re.escape(LINKS_START)}.*?{re.escape(LINKS_END)}", re.S)


def is_install_cell(cell) -> bool:
    """The generated install cell (by its first line)."""
    return cell.cell_type == "code" and cell.source.startswith(INSTALL_HEADER)


def set_launch_cells(notebook, path: str, url: str | None):
    """Give ``notebook`` (in place) its launch links and install cell, for ``url`` (``None``: no links).

    The title cell (the first, markdown) ends with the Colab and Binder links of ``path`` (the
    notebook's path in the repository, e.g. ``student/01_attacks.ipynb``); the install cell
    (:func:`install_cell_source`) comes right after it, as the first code cell. Idempotent.
    """
    import nbformat

    title = notebook.cells[0]
    if title.cell_type != "markdown":
        raise ValueError(f"{path}: the first cell must be the notebook's markdown title, not {title.cell_type}")
    title.source = _LINKS_BLOCK.sub("", title.source).rstrip()
    if url:
        title.source += f"\n\n{LINKS_START}\n{launch_links_markdown(url, path)}\n{LINKS_END}"
    install = next((c for c in notebook.cells if is_install_cell(c)), None) or nbformat.v4.new_code_cell()
    install.source = install_cell_source(url)
    rest = [c for c in notebook.cells[1:] if c is not install]
    notebook.cells = [title, install, *rest]
    return notebook


def readme_block(url: str | None, lessons: list[str]) -> str:
    """The README's launch block: a line of links per lesson (student edition), or why there are none."""
    if not url:
        lines = [f"*Launch links (Colab, Binder) appear here once `[project.urls] {URL_KEY}` is set in "
                 "`pyproject.toml`; the repository has no public address yet.*"]
    else:
        lines = [f"- `{Path(p).stem}`: {launch_links_markdown(url, p)}" for p in lessons]
    return "\n".join([LINKS_START, *lines, LINKS_END])


def set_readme_block(text: str, url: str | None, lessons: list[str]) -> str:
    """``text`` (the README) with its launch block replaced by :func:`readme_block`."""
    if not _LINKS_BLOCK.search(text):
        raise ValueError(f"the README has no launch block; add the two lines {LINKS_START!r} and {LINKS_END!r}")
    return _LINKS_BLOCK.sub(lambda _: "\n\n" + readme_block(url, lessons), text, count=1)
