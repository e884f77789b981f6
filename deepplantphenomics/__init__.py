"""Deep Plant Phenomics semantic segmentation, rebuilt on PyTorch.

``import deepplantphenomics as dpp``, then ``dpp.SemanticSegmentationModel``, ``dpp.load_model`` and
``dpp.tools``. Every public name is described in docs/api.md.
"""

from deepplantphenomics import tools
from deepplantphenomics._version import __version__
from deepplantphenomics.model import SemanticSegmentationModel, load_model

__all__ = ["SemanticSegmentationModel", "load_model", "tools", "__version__"]
