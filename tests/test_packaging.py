"""The package as a user gets it: ``python -m build`` makes a wheel and an sdist that install.

Both are built from the files git tracks (copied into a temporary folder, as a clean clone has
them), then installed one after the other into one fresh virtual environment, where the README's
demo command must run and import the installed copy, not this checkout. The environment gets the
torch release this test session runs on before autopoly, so pip takes it from its cache or local
wheels instead of downloading another build. Marked ``slow``: CI runs it.
"""

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
import torch

import autopoly

ROOT = Path(__file__).resolve().parents[1]
PIP = ("-m", "pip", "--disable-pip-version-check", "--no-input")
pytestmark = pytest.mark.slow


def _run(*args, cwd, timeout=900):
    proc = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _tracked_copy(target):
    """The checkout's tracked files in ``target``, or the whole checkout outside git."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout.decode()
        names = [name for name in listed.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info"))
        return
    for name in names:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel, sdist) built from a clean copy of the checkout."""
    try:
        # The distribution, not find_spec: a checkout's own build/ folder (left by `pip
        # install .`) would pass for a namespace package named build.
        importlib.metadata.version("build")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("needs the `build` package (in the `test` extra)")
    work = tmp_path_factory.mktemp("packaging")
    source, dist = work / "source", work / "dist"
    source.mkdir()
    _tracked_copy(source)
    _run(sys.executable, "-m", "build", "--outdir", dist, source, cwd=work)
    wheels = sorted(dist.glob("autopoly-*.whl"))
    sdists = sorted(dist.glob("autopoly-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    return wheels[0], sdists[0]


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory):
    """A new virtual environment's interpreter, with this session's torch installed."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    _run(python, *PIP, "install", "--quiet", f"torch=={torch.__version__}", cwd=env_dir)
    return python


def test_wheel_and_sdist_have_the_version_and_license(built):
    wheel, sdist = built
    version = autopoly.__version__
    assert wheel.name.startswith(f"autopoly-{version}-py3-none-any")
    assert sdist.name == f"autopoly-{version}.tar.gz"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"autopoly-{version}.dist-info/METADATA").decode()
    assert f"autopoly-{version}.dist-info/licenses/LICENSE" in names
    assert "License-Expression: BSD-3-Clause" in metadata
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "docs/"))]
    with tarfile.open(sdist) as archive:
        assert f"autopoly-{version}/LICENSE" in archive.getnames()


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_install_into_a_fresh_venv_and_run_the_demo(built, fresh_python, kind, tmp_path):
    artifact = built[0] if kind == "wheel" else built[1]
    _run(fresh_python, *PIP, "uninstall", "--yes", "autopoly", cwd=tmp_path)  # the other kind
    _run(fresh_python, *PIP, "install", "--quiet", artifact, cwd=tmp_path)

    # Run outside the checkout, so that only the installed copy can be imported.
    where = _run(fresh_python, "-c", "import autopoly; print(autopoly.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(fresh_python.parents[1]), where
    out = _run(fresh_python, "-m", "autopoly", cwd=tmp_path)
    assert "20 samples of y = x^2 + 2x + 3" in out
    assert "Fit time:" in out
    script = fresh_python.parent / ("autopoly.exe" if os.name == "nt" else "autopoly")
    assert "--target" in _run(script, "fit", "--help", cwd=tmp_path)
