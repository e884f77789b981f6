"""Deep Plant Phenomics semantic segmentation, rebuilt on PyTorch.

``import deepplantphenomics as dpp``, then ``dpp.SemanticSegmentationModel``, ``dpp.load_model``,
``dpp.tools``, ``dpp.TrainingInterrupted`` and ``dpp.measure`` (per-plant phenotypes from masks, imported on
first use). Every public name is described in docs/api.md.
"""

from deepplantphenomics import tools
from deepplantphenomics._version import __version__
from deepplantphenomics.model import SemanticSegmentationModel, load_model
from deepplantphenomics.training import TrainingInterrupted

__all__ = [
    "SemanticSegmentationModel",
    "TrainingInterrupted",
    "load_model",
    "measure",
    "tools",
    "__version__",
]


def __getattr__(name: str):
    # measure pulls in scikit-image: imported when first used, so `import deepplantphenomics` stays quick.
    if name == "measure":
        import importlib

        return importlib.import_module("deepplantphenomics.measure")
    raise AttributeError(f"module 'deepplantphenomics' has no attribute {name!r}")
