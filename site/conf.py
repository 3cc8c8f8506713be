"""Sphinx configuration of the course's website (``make site``; ``site/build_site.py`` stages the sources).

Sphinx with MyST-NB (the notebooks with their stored outputs, never re-executed) and the book
theme: the stack Jupyter Book 1.x is built on, used directly so that autodoc can write the API
reference from nslib's docstrings and every warning stops the build. ``build.py`` copies this file
into the staged sources with ``site.json`` beside it (the variant and the repository's address).
"""
import json
from pathlib import Path

SETTINGS = json.loads((Path(__file__).parent / "site.json").read_text())

project = "nslib"
author = "the nslib course"
copyright = "the nslib authors; code MIT, the MNIST subset CC BY-SA 3.0"
html_title = "nslib: neuron sensitivity and adversarial robustness"
release = SETTINGS["version"]

extensions = [
    "myst_nb",                 # Markdown (MyST) pages and notebooks with their stored outputs
    "sphinx.ext.autodoc",      # the API reference, from the docstrings
    "sphinx.ext.napoleon",     # the docstrings' Google style (Args:, Returns:, Example:)
    "sphinx_design",           # the instructor answers' dropdowns
    "sphinx.ext.githubpages",  # a .nojekyll file, so GitHub Pages serves the _static folder
]

# The notebooks as they are stored: nbval checks those outputs; the site never re-runs them.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "attrs_inline"]
# GitHub's heading anchors, so `experiments.md#e3-ablation` works here as on a code host.
myst_heading_anchors = 4

# The sources mirror the repository; the student edition is there only for its downloads.
exclude_patterns = ["student/**", "scripts/**", "_generated/**", ".doctrees/**", "site.json"]
suppress_warnings = []
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
add_module_names = False
html_copy_source = False       # nothing but the pages: the private site carries no source of a solution
html_show_sourcelink = False
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_favicon = "_static/favicon.svg"
# MathJax 3 from the site itself, not a CDN: the files the sphinx-mathjax-offline package ships
# (its TeX-to-HTML bundle, the fonts and the TeX extensions it loads on demand).
mathjax_path = "mathjax/tex-chtml.js"
MATHJAX_FILES = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions", "ui", "a11y", "sre")
html_last_updated_fmt = None   # no build date: two builds of the same sources give the same pages

url = SETTINGS["repository"]
provider = {"github.com": "github", "gitlab.com": "gitlab", "bitbucket.org": "bitbucket"}.get(
    url.split("/")[2] if url else "")
html_theme = "sphinx_book_theme"
html_context = {"default_mode": "auto"}  # light or dark as the reader's system says (unset: a console error)
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": False,
    "navigation_with_keys": False,
    **({"repository_url": url, "repository_provider": provider, "use_repository_button": True,
        "path_to_docs": ""} if provider else {}),
}


def copy_mathjax(app, exception) -> None:
    """Copy :data:`MATHJAX_FILES` of the sphinx-mathjax-offline package into ``_static/mathjax``."""
    import importlib.util
    import shutil

    if exception is not None:
        return
    package = Path(importlib.util.find_spec("sphinx-mathjax-offline").origin).parent / "static" / "mathjax"
    target = Path(app.outdir) / "_static" / "mathjax"
    for name in MATHJAX_FILES:
        if (package / name).is_dir():
            shutil.copytree(package / name, target / name, dirs_exist_ok=True)
        elif (package / name).is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(package / name, target / name)


def setup(app):
    app.connect("build-finished", copy_mathjax)
