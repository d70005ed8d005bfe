"""Shared helpers: write goal files, run the CLI, enumerate every config exhaustively."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def write_goal(folder: Path, goal: dict, name: str = "goal.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(goal, sort_keys=False))
    return path


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script the way a user does."""
    return subprocess.run([sys.executable, "-m", "tplan", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def run_json(*args: str) -> tuple[int, dict]:
    result = run_cli(*args, "--json")
    return result.returncode, json.loads(result.stdout)


def exhaustive(problem):
    """Every config in the goal's domains, assessed by the evaluator: (best passing, all passing)."""
    evaluator = problem.evaluator()
    objective = problem.objective
    passing = []
    for combination in itertools.product(*problem.domains.values()):
        assessment = evaluator.assess(dict(zip(problem.domains, combination)))
        if assessment.passes:
            passing.append(assessment)
    best = min(passing, key=lambda a: a.values[objective], default=None)
    return best, passing


@pytest.fixture
def tmp_goal(tmp_path):
    def make(goal: dict, name: str = "goal.yaml") -> Path:
        return write_goal(tmp_path, goal, name)
    return make


JUDGES = ROOT / "tests" / "judges"


@pytest.fixture(scope="session")
def judge():
    """run(script, *args, packages=None) -> the JSON an engine judge prints (tests/judges): the script
    runs in a subprocess, with tests/judges/requirements-PACKAGES.txt installed once per virtual
    environment (--no-deps --target, beside sys.prefix) in front of the test environment."""
    def run(script: str, *args, packages: str | None = None) -> dict:
        env = {**os.environ, "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning"}
        if packages:
            env["PYTHONPATH"] = str(_installed(packages))
        result = subprocess.run([sys.executable, str(JUDGES / script), *map(str, args)], capture_output=True,
                                text=True, env=env, timeout=300)
        assert result.returncode == 0, f"{script} refused {args}:\n{result.stderr[-3000:]}"
        return json.loads(result.stdout.strip().splitlines()[-1])
    return run


def _installed(packages: str) -> Path:
    requirements = JUDGES / f"requirements-{packages}.txt"
    target = Path(sys.prefix) / "tplan-judges" / packages
    marker = target / ".installed"
    if not marker.is_file() or marker.read_text() != requirements.read_text():
        installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                                    "--disable-pip-version-check", "--target", str(target), "--upgrade", "-r",
                                    str(requirements)], capture_output=True, text=True)
        assert installed.returncode == 0, f"installing {requirements.name} failed:\n{installed.stderr[-3000:]}"
        marker.write_text(requirements.read_text())
    return target
