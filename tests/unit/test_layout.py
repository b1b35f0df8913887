"""The layout of daemon/: each subpackage says what it owns and may import, and the files
the code finds next to itself (the shipped config and policies) are where it looks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from watchkeeper.daemon.cli.main import build_parser
from watchkeeper.daemon.demo.run import SHIPPED_POLICIES

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.parent for p in (ROOT / "daemon").glob("*/__init__.py"))


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_each_subpackage_says_what_it_owns_and_may_import(package: Path) -> None:
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
    if package.name == "migrations":
        return
    assert doc, f"{package.name}/__init__.py has no docstring"
    assert "Owns" in doc and "May import" in doc, package.name


def test_the_shipped_files_are_found() -> None:
    assert any(SHIPPED_POLICIES.glob("*.yaml")), SHIPPED_POLICIES
    args = build_parser().parse_args(["demo"])
    assert Path(args.config).is_file(), args.config


def test_the_daemon_starts_without_the_heavy_libraries() -> None:
    """Issue 14: pandas, scipy, Evidently, onnxruntime and scikit-learn load only when a
    report, an offline check, an auto threshold, a χ² test or a shadow evaluation needs
    them (~100 MB of RSS before the first event otherwise). A fresh interpreter, since
    this one has imported them for other tests."""
    code = (
        "import sys, watchkeeper.daemon.cli.main, watchkeeper.daemon.app\n"
        "heavy = ('pandas', 'scipy', 'evidently', 'onnxruntime', 'sklearn', 'onnx')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", out.stdout
