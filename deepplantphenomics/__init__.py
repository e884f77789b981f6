"""Deep Plant Phenomics semantic segmentation, rebuilt on PyTorch.

``import deepplantphenomics as dpp``, then ``dpp.SemanticSegmentationModel``, ``dpp.load_model``,
``dpp.tools`` and ``dpp.TrainingInterrupted``. Every public name is described in docs/api.md.
"""

from deepplantphenomics import tools
from deepplantphenomics.model import SemanticSegmentationModel, __version__, load_model
from deepplantphenomics.training import TrainingInterrupted

__all__ = ["SemanticSegmentationModel", "TrainingInterrupted", "load_model", "tools", "__version__"]
