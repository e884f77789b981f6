"""Deep Plant Phenomics semantic segmentation, rebuilt on PyTorch.

import deepplantphenomics as dpp
model = dpp.SemanticSegmentationModel(debug=True)
"""

from deepplantphenomics import tools
from deepplantphenomics.model import SemanticSegmentationModel, __version__, load_model

__all__ = ["SemanticSegmentationModel", "load_model", "tools", "__version__"]
