"""Convert public medical datasets into imagefolders that `load_imagefolder` reads."""

from memcontrol.data.importers.medmnist import import_medmnist
from memcontrol.data.importers.mimic import import_mimic_cxr

__all__ = ["import_medmnist", "import_mimic_cxr"]
