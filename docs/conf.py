"""Sphinx configuration: numpydoc API pages, a sphinx-gallery of examples/, pydata theme.

Build with warnings as errors, as CI does (tests/test_docs.py)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import sys
from pathlib import Path

from sphinx.directives.other import TocTree

HERE = Path(__file__).resolve().parent
# Build from a source checkout even when autopoly is not installed.
sys.path.insert(0, str(HERE.parent))

import autopoly  # noqa: E402

project = "autopoly"
author = "the autopoly developers"
copyright = "the autopoly developers"  # noqa: A001 (Sphinx's name)
release = autopoly.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

exclude_patterns = [
    "_build",
    "_templates",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.md5",
    "auto_examples/*.json",
]
templates_path = ["_templates"]
default_role = "literal"

# API pages: one per public object, members documented from their numpydoc docstrings.
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"autopoly {release}"
html_static_path = []
# Unset, the theme's script logs "invalid theme mode" to the console on every page.
html_context = {"default_mode": "auto"}
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": True,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False

# The pages must work offline: no intersphinx inventories, no MathJax from a CDN (the
# docs write formulas in plain text), no remote images.
sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("autopoly",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"autopoly": None},
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "matplotlib_animations": False,
    "plot_gallery": "True",
    "min_reported_time": 0,
    # The timing pages load jQuery and DataTables from CDNs, which fail offline.
    "write_computation_times": False,
}

os.environ.setdefault("MPLBACKEND", "Agg")


def setup(app):
    # docs/index.rst still lists the scaling, benchmarks and reliability pages under
    # "optional-toctree", a directive that used to drop pages not yet written. They all exist
    # now, so the name is a plain toctree. Once index.rst says "toctree", delete this function.
    app.add_directive("optional-toctree", TocTree)
