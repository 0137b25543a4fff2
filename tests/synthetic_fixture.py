"""The SYNTHETIC test fixture (experiments/accuracy/synthetic.py), imported once for all tests.

Its numbers come from a generating function, not a GPU: tests use it to check the fitting and
prediction machinery, never accuracy on real hardware.
"""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NAME = "exante_synthetic_fixture"
SYNTH_HW = "synthtest"  # hardware id of the artifact fitted on it in conftest.py

if _NAME in sys.modules:
    SYN = sys.modules[_NAME]
else:
    _spec = importlib.util.spec_from_file_location(
        _NAME, os.path.join(ROOT, "experiments", "accuracy", "synthetic.py"))
    SYN = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = SYN
    _spec.loader.exec_module(SYN)
