"""The dependency rules between the apps are import-linter contracts ([tool.importlinter] in pyproject.toml),
run by `make test`. Each contract is shown to catch a violation: a copy of the code with one planted import
must make `lint-imports` fail on that contract, and the unchanged copy must pass."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]

# One planted violation per contract: (module that gets the line, the offending import).
PLANTS = {
    "layers": ("transcripts/models/transcripts.py", "import judging.verdicts"),
    "experiments-one-way": ("transcripts/generation.py", "import transcripts.experiments.actions"),
    "pure-statistics": ("analysis/paired.py", "import django.db"),
}


def _copy_of_the_code(tmp_path: Path) -> Path:
    for package in CONFIG["root_packages"]:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=where, capture_output=True, text=True, timeout=120)


def test_every_contract_has_a_planted_violation():
    assert {c["id"] for c in CONFIG["contracts"]} == set(PLANTS)


def test_the_code_keeps_every_contract(tmp_path):
    result = _lint(_copy_of_the_code(tmp_path))
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("contract", sorted(PLANTS))
def test_a_planted_violation_breaks_its_contract(tmp_path, contract):
    where = _copy_of_the_code(tmp_path)
    module, line = PLANTS[contract]
    target = where / module
    target.write_text(target.read_text() + f"\n{line}\n")
    result = _lint(where)
    name = next(c["name"] for c in CONFIG["contracts"] if c["id"] == contract)
    assert result.returncode != 0
    assert f"{name} BROKEN" in result.stdout, result.stdout
