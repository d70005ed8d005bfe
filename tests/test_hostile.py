"""The adversarial corpus: every file in tests/hostile is one hostile input with its verdict.

A case names the files to write (text, base64 bytes, a repeated text for size bombs, a
directory or a named pipe), the command line, the exit code and fragments of the message (a list of
fragments where any one will do). Each runs the
installed command in a fresh folder as a user would, and must: exit with the expected code,
print no traceback, say which file is at fault, use bounded CPU time and memory, and leave no
output file behind unless the whole command succeeded. The selected cases run concurrently
(one process per CPU) before their assertions are checked one by one.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

CASES = sorted((Path(__file__).parent / "hostile").glob("*.yaml"))
CPU_SECONDS = 5.0           # per case (issue 13)
MEMORY_BYTES = 500 * 2**20  # peak resident memory per case
WALL_SECONDS = 60           # a hung case is killed after this; the CPU bound is the assertion


def _write(folder: Path, name: str, spec) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(spec, str):
        path.write_text(spec, encoding="utf-8")
    elif "base64" in spec:
        path.write_bytes(base64.b64decode(spec["base64"]))
    elif "repeat" in spec:
        path.write_text(spec.get("prefix", "") + spec["repeat"] * spec["times"] + spec.get("suffix", ""))
    elif spec.get("directory"):
        path.mkdir()
    elif spec.get("fifo"):
        os.mkfifo(path)
    else:
        raise ValueError(f"unknown file spec {spec!r}")


# Linux hands a child the peak memory of the process it was forked from (pytest, with torch
# loaded, is ~600 MiB), so a small launcher process starts tplan and reports its own child's usage.
LAUNCHER = """
import json, os, subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "tplan", *sys.argv[2:]])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as report:
    json.dump([usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024], report)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _run(args: list[str], cwd: Path) -> tuple[int, str, float, int]:
    """Exit code, stdout + stderr, CPU seconds and peak resident bytes of one command."""
    usage = cwd / ".usage"
    with open(cwd / ".stdout", "w+b") as out, open(cwd / ".stderr", "w+b") as err:
        process = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(usage), *args], cwd=cwd, stdout=out,
                                   stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
        try:
            code = process.wait(timeout=WALL_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
        out.seek(0), err.seek(0)
        text = out.read().decode(errors="replace") + err.read().decode(errors="replace")
    cpu, memory = json.loads(usage.read_text()) if usage.exists() else (WALL_SECONDS, 0)
    return code, text, cpu, memory


def _attempt(case: Path, folder: Path) -> tuple:
    """Write the case's files into ``folder``, run it; (spec, files before, exit, output, CPU, memory)."""
    spec = yaml.safe_load(case.read_text(encoding="utf-8"))
    for name, content in (spec.get("files") or {}).items():
        _write(folder, name, content)
    before = set(folder.rglob("*"))
    return (spec, before, *_run([str(arg) for arg in spec["args"]], folder))


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict:
    selected = [item.callspec.params["case"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_hostile_input"]
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        folders = [tmp_path_factory.mktemp(case.stem) for case in selected]
        return {case: (folder, result) for case, folder, result
                in zip(selected, folders, pool.map(_attempt, selected, folders))}


@pytest.mark.parametrize("case", CASES, ids=[case.stem for case in CASES])
def test_hostile_input(case: Path, outcomes: dict):
    folder, (spec, before, code, output, cpu, memory) = outcomes[case]
    assert "Traceback" not in output, output
    assert code == spec["exit"], output
    for fragment in spec.get("message", []):  # a list of fragments: any one of them (a verdict the clock decides)
        alternatives = fragment if isinstance(fragment, list) else [fragment]
        assert any(text in output for text in alternatives), f"{fragment!r} not in {output!r}"
    if spec["exit"] == 2:
        blamed = spec.get("blames", spec["args"][1])
        assert output.count("\n") <= 1 and f"{blamed}:" in output, output  # one line, the file at fault
        assert len(output) < 2000, output  # a hostile value is not echoed back in full
    created = {path for path in folder.rglob("*") if path.name not in (".stdout", ".stderr", ".usage")} - before
    assert {path.name for path in created} == set(spec.get("creates", [])), created
    for name, content in (spec.get("files") or {}).items():  # inputs are never overwritten
        if isinstance(content, str):
            assert (folder / name).read_text(encoding="utf-8") == content
    assert cpu <= CPU_SECONDS, f"{cpu:.1f} s of CPU"
    assert memory <= MEMORY_BYTES, f"{memory / 2**20:.0f} MiB resident"
