"""Launch scripts: the torchrun, deepspeed or accelerate line that starts a run on its nodes, with
the paths quoted and a hostfile where it spans several nodes."""

from __future__ import annotations

import shlex

from .run import Run

PORT = 29500      # torch.distributed's usual rendezvous port


def script(run: Run, command: list[str], notes: list[str] = (), cd: bool = False) -> str:
    """launch.sh: ``command`` (words; a word starting with $HERE/ is a file beside the script) run on
    each node (the deepspeed launcher's: once, on the first host of its hostfile), after what the
    training script itself must do (``notes``); with ``cd``, from the script's folder (the files it
    names name each other by relative paths)."""
    lines = ["#!/usr/bin/env bash",
             f"# Written by tplan for {run.problem.model_name} on {run.config['gpus']} x {run.problem.gpu_name} "
             f"({run.nodes} node{'s' if run.nodes > 1 else ''}).",
             *(f"# {note}" for note in notes)]
    if run.nodes > 1 and command[0] == "deepspeed":
        lines += ["# Several nodes: run this script once, on the first host of the hostfile, with MASTER_ADDR (its",
                  "# address) set; the deepspeed launcher starts every host of the hostfile over ssh (pdsh)."]
    elif run.nodes > 1:
        lines += [f"# Several nodes: run this script on each node with NODE_RANK (0..{run.nodes - 1}) and "
                  f"MASTER_ADDR (node 0's address) set."]
    lines += ["set -euo pipefail", 'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
              *(['cd "$HERE"'] if cd else []), line(command), ""]
    return "\n".join(lines)


def line(command: list[str]) -> str:
    """One shell command line from its words."""
    return " ".join(_word(word) for word in command)


def _word(word: str) -> str:
    """A file beside the script ($HERE/name) or a variable ("$NAME") in double quotes, anything else
    quoted for the shell."""
    if word.startswith("$HERE/"):
        return f'"{word}"'
    return word if word.startswith('"$') else shlex.quote(word)


def torchrun(run: Run) -> list[str]:
    """torchrun's options for the plan's nodes and GPUs per node."""
    words = ["torchrun", "--nproc_per_node", str(run.per_node)]
    if run.nodes > 1:
        words += ["--nnodes", str(run.nodes), "--node_rank", '"$NODE_RANK"', "--rdzv_backend", "c10d",
                  "--rdzv_endpoint", f'"$MASTER_ADDR:{PORT}"']
    return words


def deepspeed(run: Run) -> list[str]:
    """The deepspeed launcher's options: a hostfile (written beside the script) for several nodes."""
    if run.nodes > 1:
        return ["deepspeed", "--hostfile", "$HERE/hostfile", "--num_nodes", str(run.nodes),
                "--num_gpus", str(run.per_node), "--master_addr", '"$MASTER_ADDR"', "--master_port", str(PORT)]
    return ["deepspeed", "--num_gpus", str(run.per_node)]


def hostfile(run: Run) -> dict[str, str]:
    """{'hostfile': text} for several nodes (placeholder host names to replace), else {}."""
    if run.nodes == 1:
        return {}
    hosts = "\n".join(f"node-{index} slots={run.per_node}" for index in range(run.nodes))
    return {"hostfile": f"# one line per node: its ssh host name and GPU slots (replace the names)\n{hosts}\n"}
