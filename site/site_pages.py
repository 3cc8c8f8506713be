"""The website's pages written from what the package and the repository hold, never typed:

- the API reference: a page per module of ``nslib``, an autodoc entry per public name (its
  ``__all__``; a module without one: the functions and classes it defines). A public name without
  a docstring stops the build (:class:`MissingDocstrings`);
- the data catalogue: a page per data set (``nslib.data.DATASETS``) and per shipped checkpoint (the
  manifest, and what each checkpoint says of itself), with licence and sha256;
- the results of ``python -m nslib reproduce``: a run's ``REPORT.md`` and its files, or how to make them.
"""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import shutil
import tomllib
from pathlib import Path

#: The API reference's folder in the site, and the data catalogue's.
API_DIR, DATA_DIR = "api", "data"


class MissingDocstrings(RuntimeError):
    """Public names of nslib without a docstring: the API reference would show them bare."""


# --- the API reference ----------------------------------------------------------------------

def public_modules() -> list[str]:
    """Every module of the package whose dotted name has no part starting with ``_``."""
    import nslib

    names = ["nslib"] + [m.name for m in pkgutil.walk_packages(nslib.__path__, "nslib.")]
    return [n for n in names if not any(part.startswith("_") for part in n.split("."))]


def public_names(module) -> list[str]:
    """The module's ``__all__``; without one, the functions and classes it defines, not starting with ``_``."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, obj in vars(module).items() if not name.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__]


def _attribute_docs(modname: str) -> dict[str, str]:
    """The documented module-level names of ``modname`` (``#:`` comments or a string after the assignment)."""
    from sphinx.pycode import ModuleAnalyzer

    docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
    return {name: "\n".join(lines).strip() for (scope, name), lines in docs.items() if scope == ""}


def _own_doc(obj) -> str | None:
    """A function's or class's own docstring (a class's not inherited, nor the one dataclasses invent)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not doc or (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")):
        return None
    return doc


def _entry(modname: str, name: str, obj, data_home: dict[int, str], attr_docs: dict[str, str]) -> tuple[str, bool]:
    """A name's reStructuredText on its module's page (autodoc; a link where it is documented
    elsewhere), and whether it is documented."""
    if inspect.ismodule(obj):
        return f"- ``{name}``: :py:mod:`{obj.__name__}`", bool(obj.__doc__)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        home = obj.__module__
        if home != modname:  # re-exported: documented on its home module's page
            role = "py:class" if inspect.isclass(obj) else "py:func"
            return f"- ``{name}``: :{role}:`{home}.{obj.__qualname__}`", bool(_own_doc(obj))
        kind = ("autoexception" if issubclass(obj, BaseException) else "autoclass") if inspect.isclass(obj) \
            else "autofunction"
        options = "\n   :members:" if inspect.isclass(obj) else ""
        return f".. {kind}:: {modname}.{name}{options}", bool(_own_doc(obj))
    if name in attr_docs:
        plain = isinstance(obj, (int, float, str, bool, type(None))) and len(repr(obj)) <= 80
        return f".. autodata:: {modname}.{name}{'' if plain else chr(10) + '   :no-value:'}", True
    home = data_home.get(id(obj))
    if home and home != modname:
        return f"- ``{name}``: :py:data:`{home}.{name}`", True
    return "", False


def _data_homes(modules: list[str]) -> dict[int, str]:
    """id of each documented module-level value -> the module that documents it (for re-exports)."""
    homes = {}
    for modname in modules:
        module = importlib.import_module(modname)
        for name in _attribute_docs(modname):
            if hasattr(module, name):
                homes.setdefault(id(getattr(module, name)), modname)
    return homes


def module_page(modname: str, data_home: dict[int, str]) -> tuple[str, list[str]]:
    """The API page of one module, and its public names that have no docstring."""
    module = importlib.import_module(modname)
    attr_docs = _attribute_docs(modname)
    blocks, missing = [], [] if module.__doc__ else [modname]
    for name in public_names(module):
        if not hasattr(module, name):
            raise AttributeError(f"{modname}.__all__ names {name!r}, which the module does not define")
        block, documented = _entry(modname, name, getattr(module, name), data_home, attr_docs)
        blocks.append(block)
        if not documented:
            missing.append(f"{modname}.{name}")
    links = [b for b in blocks if b.startswith("- ")]
    entries = [b for b in blocks if b and not b.startswith("- ")]
    rst = [f".. automodule:: {modname}\n   :no-members:"]
    if links:
        rst.append("Also here, documented where they are defined:\n\n" + "\n".join(links))
    body = "\n\n".join(rst + entries)
    return f"# `{modname}`\n\n```{{eval-rst}}\n{body}\n```\n", missing


def write_api_pages(target: Path) -> list[str]:
    """The API reference under ``target/api``: an index and a page per module; returns the modules.

    Raises:
        MissingDocstrings: naming every public name without a docstring.
    """
    modules = public_modules()
    homes = _data_homes(modules)
    folder = target / API_DIR
    folder.mkdir(parents=True, exist_ok=True)
    missing, rows = [], []
    for modname in modules:
        page, undocumented = module_page(modname, homes)
        missing += undocumented
        (folder / f"{modname}.md").write_text(page, encoding="utf-8")
        summary = (importlib.import_module(modname).__doc__ or "").strip().split("\n")[0].replace("|", "\\|")
        rows.append(f"| [`{modname}`]({modname}.md) | {summary} |")
    if missing:
        raise MissingDocstrings(f"{len(missing)} public names have no docstring (write one, or a `#:` comment "
                                f"above a constant): {', '.join(missing)}")
    index = ["# API reference", "",
             "Every public name of the package (each module's `__all__`), from its docstring: signature, "
             "the shapes of its tensors, the paper's symbols and an example where it has one.", "",
             "| module | what it holds |", "|---|---|", *rows, "",
             "Every name in one list: {ref}`genindex`; every module: {ref}`modindex`; or {ref}`search`.", "",
             "```{toctree}\n:hidden:\n\n" + "\n".join(modules) + "\n```", ""]
    (folder / "index.md").write_text("\n".join(index), encoding="utf-8")
    return modules


# --- the data catalogue -----------------------------------------------------------------------

def _licence_of(readme: str, filename: str) -> str:
    """The ``**Licence.**`` paragraph of the section of ``data/README.md`` about ``filename``."""
    for section in re.split(r"\n(?=## )", readme):
        if section.startswith("## ") and filename in section.splitlines()[0]:
            match = re.search(r"\*\*Licence\.\*\*(.*?)(?:\n\n|\Z)", section, re.S)
            if match:
                return " ".join(match.group(1).split())
    raise ValueError(f"data/README.md has no **Licence.** paragraph in a section about {filename}")


def _table(rows: list[tuple[str, str]]) -> list[str]:
    return ["| | |", "|---|---|", *[f"| {key} | {value} |" for key, value in rows], ""]


def dataset_page(info, embedded: tuple[str, str] | None, readme: str) -> str:
    """A data set's page: what it is, and for the shipped one its file, sha256, arrays and licence."""
    from nslib import data

    rows = [("name", f"`{info.name}`"), ("images", f"{info.channels} × {info.image_size} × {info.image_size}, "
                                                      "floats in [0, 1]"),
            ("classes", ", ".join(info.classes)), ("mean / std", f"{info.mean} / {info.std}"),
            ("usual eps (L-inf)", f"{info.eps:.4g}"), ("source", info.source)]
    lines = [f"# Data set `{info.name}`", ""]
    if embedded:
        import numpy as np

        file, sha = embedded
        path = data.EMBEDDED_DIR / file
        with np.load(path) as arrays:
            shapes = ", ".join(f"`{k}` {tuple(arrays[k].shape)}" for k in arrays.files)
        rows += [("file", f"`data/{file}` ({path.stat().st_size / 1e6:.2f} MB), shipped in the package"),
                 ("sha256", f"`{sha}` (checked on every load)"), ("arrays", shapes),
                 ("licence", _licence_of(readme, file))]
        lines += [f"Shipped with the course: `nslib.data.load(\"{info.name}\", \"train\")` reads it.", ""]
    else:
        rows += [("file", "not shipped: torchvision downloads it on request into `nslib.data.download_root()`"),
                 ("sha256", "none recorded by nslib: torchvision checks the archives it downloads"),
                 ("licence", "its publisher's; the course ships none of it")]
        lines += [f"Downloaded on request: `python -m nslib download {info.name}` (needs the internet), then "
                  f"`nslib.data.load(\"{info.name}\", \"train\")`.", ""]
    return "\n".join(lines + _table(rows) + ["How the course's data travel: [the data README](README.md).", ""])


def checkpoint_page(name: str, entry: dict, checkpoint: dict, licence: str) -> str:
    """A shipped checkpoint's page: file, sha256, what it is, how it was trained, what it scored."""
    recipe = dict(checkpoint.get("recipe", {}))
    command = recipe.pop("command", None)
    rows = [("file", f"`data/checkpoints/{entry['file']}`"), ("sha256", f"`{entry['sha256']}` (checked on every load)"),
            ("architecture", f"`{checkpoint['arch']}`"), ("trained on", f"`{checkpoint['dataset']}`"),
            ("epochs logged", str(len(checkpoint.get("log", [])))), ("licence", licence)]
    lines = [f"# Checkpoint `{name}`", "", f"Load it with `nslib.checkpoints.load_pretrained(\"{name}\")`.", "",
             *_table(rows)]
    if command:
        lines += ["## How it was trained", "", "```bash", command, "```", ""]
    lines += ["## Recipe", "", *_table([(f"`{k}`", f"`{json.dumps(v)}`") for k, v in recipe.items()]),
              "## Metrics", "", *_table([(f"`{k}`", f"`{json.dumps(v)}`") for k, v in checkpoint.get("metrics", {}).items()]),
              "How the shipped models were trained and measured: [the checkpoints README](README.md).", ""]
    return "\n".join(lines)


def write_data_pages(root: Path, target: Path) -> list[str]:
    """The data catalogue under ``target/data`` (beside the copies of ``data/README.md`` and
    ``data/checkpoints/README.md``); returns the pages written, relative to ``target``."""
    from nslib import data
    from nslib.checkpoints import CHECKPOINT_DIR, MANIFEST, read_checkpoint

    readme = (root / "data" / "README.md").read_text(encoding="utf-8")
    licence = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["license"]
    folder = target / DATA_DIR
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "data" / "README.md", folder / "README.md")
    shutil.copyfile(root / "data" / "checkpoints" / "README.md", folder / "checkpoints" / "README.md")
    pages = []
    for name, info in data.DATASETS.items():
        (folder / f"{name}.md").write_text(dataset_page(info, data.EMBEDDED_FILES.get(name), readme), encoding="utf-8")
        pages.append(f"{DATA_DIR}/{name}")
    manifest = json.loads((CHECKPOINT_DIR / MANIFEST).read_text())
    checkpoint_licence = (f"the package's, `{licence}`: trained by the course's code (MIT) on the MNIST subset "
                          "(CC BY-SA 3.0)")
    for name, entry in sorted(manifest.items()):
        checkpoint = read_checkpoint(CHECKPOINT_DIR / entry["file"])
        (folder / "checkpoints" / f"{name}.md").write_text(checkpoint_page(name, entry, checkpoint, checkpoint_licence),
                                                           encoding="utf-8")
        pages.append(f"{DATA_DIR}/checkpoints/{name}")
    index = ["# Data sets and checkpoints", "",
             "What the course reads, one page each: the data sets `nslib.data` knows and the trained checkpoints "
             "the package ships (from `data/checkpoints/manifest.json`).", "",
             "| page | sha256 |", "|---|---|"]
    for name in data.DATASETS:
        sha = data.EMBEDDED_FILES.get(name, (None, "downloaded, not shipped"))[1]
        index.append(f"| [data set `{name}`]({name}.md) | `{sha}` |")
    index += [f"| [checkpoint `{name}`](checkpoints/{name}.md) | `{entry['sha256']}` |"
              for name, entry in sorted(manifest.items())]
    index += ["", "```{toctree}\n:hidden:\n\nREADME\ncheckpoints/README\n" +
              "\n".join(p.removeprefix(f"{DATA_DIR}/") for p in pages) + "\n```", ""]
    (folder / "index.md").write_text("\n".join(index), encoding="utf-8")
    return pages


# --- the results of `reproduce` ---------------------------------------------------------------

def _figures_of(function) -> list[str]:
    """The figures an experiment's ``run`` writes, as named in its module's source."""
    return re.findall(r'"(\w+\.png)"', inspect.getsource(inspect.getmodule(function)))


def how_to_make_results() -> str:
    """The results page without a run: the command, and what each step writes (from ``nslib.reproduce``)."""
    from nslib.reproduce import DOCS, STEPS

    rows = []
    for name, (function, title) in STEPS.items():
        docs = ", ".join(f"[{s.split('#')[1].replace('-', ' ')}](../{s})" for s in DOCS.get(name, ()))
        figures = ", ".join(f"`{f}`" for f in _figures_of(function)) or "tables only"
        rows.append(f"| {title} | {docs} | {figures} |")
    return "\n".join([
        "# Results of `reproduce`", "",
        "This copy of the site was built without a run of `reproduce`, so it shows no results. "
        "Make them (about 5 minutes on a 2-core CPU, the shipped checkpoints, offline):", "",
        "```bash", "make reproduce              # results/REPORT.md, its figures and tables",
        "make site RESULTS=results   # this site, with them on this page", "```", "",
        "Each step writes its tables (CSV) and figures (PNG), and states its finding in `REPORT.md`:", "",
        "| step | what it tests | figures |", "|---|---|---|", *rows, ""])


def write_results_page(target: Path, results: Path | None) -> list[str]:
    """``target/results/index.md``: the run's ``REPORT.md`` (with the files it links), or how to make it."""
    folder = target / "results"
    folder.mkdir(parents=True, exist_ok=True)
    if results is None:
        (folder / "index.md").write_text(how_to_make_results(), encoding="utf-8")
        return []
    report = (results / "REPORT.md").read_text(encoding="utf-8")
    linked = sorted(set(re.findall(r"\]\(([\w.-]+\.(?:png|csv))\)", report)))
    for name in linked:
        shutil.copyfile(results / name, folder / name)
    (folder / "index.md").write_text(report, encoding="utf-8")
    return linked
