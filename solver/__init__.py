"""tplan: will a training run fit, how long will it take, and which settings are fastest.

Pipeline, one module per step: load (YAML/JSON with line numbers) -> validate (JSON
Schema) -> rules + goal (rule packs, catalogs, knob domains) -> compile (CP-SAT model)
-> search (CP-SAT, certified by the evaluator) -> explain (reports) -> emit (DeepSpeed,
Hugging Face arguments, launch line). The Python API (api.py): tplan.solve, tplan.check.
"""

from .api import Answer, check, solve
from .errors import InputError

__all__ = ["Answer", "InputError", "check", "solve"]
__version__ = "0.2.0"
