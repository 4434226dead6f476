"""The documentation: its code runs, it builds with warnings as errors, its pages load cleanly.

The build (marked ``slow``; it runs in CI) copies the files of ``docs/``, ``examples/`` and
``benchmarks/`` that git tracks (``git add`` a new page for it to count) into a temporary
folder, as a clean clone would have them, and runs Sphinx with ``-W --keep-going``;
sphinx-gallery executes every ``examples/plot_*.py`` during it. It is skipped when the
``[docs]`` extra is not installed. The pages are then opened in headless Chromium by
``docs/check_html.py`` (skipped when no Chromium is installed; on Debian:
``apt-get install chromium``).
"""

import doctest
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from sklearn.exceptions import ConvergenceWarning

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))
SOURCES = ("docs", "examples", "benchmarks")
# Outputs of a local build in docs/, which a clean clone does not have.
BUILD_OUTPUTS = {"_build", "auto_examples", "generated", "sg_execution_times.rst", "__pycache__"}


def source_files():
    """The documentation's sources as a clean clone has them: the files git tracks."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--", *SOURCES],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
        files = [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.SubprocessError):  # not a git checkout: take the folders
        files = [
            p
            for folder in SOURCES
            for p in (ROOT / folder).rglob("*")
            if p.is_file() and not BUILD_OUTPUTS & set(p.relative_to(ROOT).parts)
        ]
    return [f for f in files if f.is_file()]


@pytest.mark.parametrize("page", ["getting_started.rst", "user_guide.rst", "inference.rst"])
def test_code_in_pages_runs(page, capsys):
    with warnings.catch_warnings():
        # The progress example stops at max_iter on purpose.
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = doctest.testfile(
            str(DOCS / page),
            module_relative=False,
            report=True,
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        )
    assert result.attempted > 0
    assert result.failed == 0, capsys.readouterr().out


@pytest.fixture(scope="session")
def built_docs(tmp_path_factory):
    """Build once per test session (shared by pytest-xdist workers); return (html, result)."""
    for module in ("sphinx", "numpydoc", "sphinx_gallery", "pydata_sphinx_theme", "matplotlib"):
        pytest.importorskip(module, reason="the docs need the [docs] extra")
    from filelock import FileLock  # a dependency of torch

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, common to all workers
    work = base / "docs-build"
    with FileLock(str(base / "docs-build.lock")):
        record = work / "result.json"
        if not record.exists():
            shutil.rmtree(work, ignore_errors=True)
            for source in source_files():
                target = work / source.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
            start = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sphinx",
                    "-W",
                    "--keep-going",
                    "-b",
                    "html",
                    "-d",
                    str(work / "doctrees"),
                    str(work / "docs"),
                    str(work / "html"),
                ],
                capture_output=True,
                text=True,
                timeout=900,
                cwd=work,
                env={**os.environ, "MPLBACKEND": "Agg"},
            )
            result = {
                "returncode": proc.returncode,
                "seconds": time.perf_counter() - start,
                "log": proc.stdout[-5000:] + proc.stderr,
            }
            record.write_text(json.dumps(result))
        result = json.loads(record.read_text())
    return work / "html", result


@pytest.mark.slow
def test_docs_build_without_warnings(built_docs):
    html, result = built_docs
    assert result["returncode"] == 0, "sphinx -W failed:\n" + result["log"]
    print(f"docs built in {result['seconds']:.0f} s")
    for page in [
        "index",
        "getting_started",
        "user_guide",
        "api",
        "auto_examples/index",
        "generated/autopoly.TorchPolyRegressor",
        "generated/autopoly.plotting.LossCurveDisplay",
    ]:
        assert (html / f"{page}.html").is_file(), page


@pytest.mark.slow
@pytest.mark.parametrize("example", [p.stem for p in EXAMPLES])
def test_gallery_examples_ran_and_made_figures(built_docs, example):
    html, _ = built_docs  # a failed build is reported above; --keep-going still writes pages
    page = (html / "auto_examples" / f"{example}.html").read_text(encoding="utf-8")
    figures = sorted((html / "_images").glob(f"sphx_glr_{example}_0*.png"))
    assert figures, f"{example} produced no figure"
    for figure in figures:
        assert figure.stat().st_size > 5000, figure  # a real plot, not an empty canvas
        assert f"_images/{figure.name}" in page
    assert "Traceback" not in page


@pytest.mark.slow
def test_pages_open_in_headless_chromium(built_docs, tmp_path):
    html, _ = built_docs
    pages = [html / "index.html", html / "auto_examples" / "plot_1_tutorial.html"]
    pages += sorted(
        p
        for p in html.rglob("*.html")
        if not {"_static", "_modules"} & set(p.parts) and p not in pages
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(DOCS / "check_html.py"),
            *map(str, pages),
            "--screenshots",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode == 2 and "no browser found" in proc.stderr:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": ok (") == len(pages), proc.stdout
    # The tutorial page shows its figures.
    tutorial = next(line for line in proc.stdout.splitlines() if "plot_1_tutorial.html" in line)
    assert "0 images" not in tutorial
