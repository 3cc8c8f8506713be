"""Loads tests/nbval_tolerance.py, the plugin that lets nbval's comparison of stored notebook outputs
hold on any CPU within a stated tolerance (``pytest tests notebooks --nbval``)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
pytest_plugins = ["nbval_tolerance"]
