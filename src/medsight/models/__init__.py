"""Model zoo: architectures behind one factory, the saved-model format and its typed manifest,
and the backend seam inference runs through."""

from medsight.models.backend import Backend, TorchBackend
from medsight.models.manifest import Manifest, parse_manifest
from medsight.models.registry import create_model, get_spec, list_models, register_model
from medsight.models.saved import SavedModel, list_zoo, load_model, save_model

__all__ = ["create_model", "list_models", "register_model", "get_spec", "SavedModel", "load_model", "save_model",
           "list_zoo", "Manifest", "parse_manifest", "Backend", "TorchBackend"]
