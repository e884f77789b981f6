"""The package version, defined here only.

pyproject.toml reads it (``[tool.setuptools.dynamic]``), and every module that records the version (the
facade, saved states, reports, ONNX metadata, ``dpp --version``) imports it from here, so no helper has to
import the facade for it.
"""

__version__ = "0.1.0"
