"""CP-SAT, the solver behind compile.py and search.py, imported without pandas.

OR-Tools' ``cp_model`` imports pandas as it loads (0.2 s, nearly half of the import and a fifth of
a one-node ``tplan solve``) only to accept pandas objects in its ``*_series`` helpers, which tplan
never calls: at load it reads ``pandas.Index`` and ``pandas.Series`` and nothing else. So where
pandas is not loaded yet, ``cp_model`` is imported against a stand-in holding those two names, which
leaves ``sys.modules`` at once (a later ``import pandas`` gets the real one). Should an OR-Tools
release need more of pandas at load, the stand-in fails and ``cp_model`` is imported as usual.
"""

from __future__ import annotations

import importlib
import sys
import types

MODULE = "ortools.sat.python.cp_model"
STAND_IN_NAMES = ("Index", "Series")  # what cp_model reads of pandas at load (ortools 9.15)


def _import():
    if "pandas" in sys.modules or MODULE in sys.modules:
        return importlib.import_module(MODULE)
    stand_in = types.ModuleType("pandas", "a stand-in while OR-Tools' cp_model loads (solver/cpsat.py)")
    for name in STAND_IN_NAMES:
        setattr(stand_in, name, type(name, (), {}))
    sys.modules["pandas"] = stand_in
    try:
        return importlib.import_module(MODULE)
    except Exception:  # this release reads more of pandas at load: import it for real
        sys.modules.pop(MODULE, None)
        sys.modules.pop("pandas", None)
        return importlib.import_module(MODULE)
    finally:
        if sys.modules.get("pandas") is stand_in:
            del sys.modules["pandas"]


cp_model = _import()
