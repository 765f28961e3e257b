"""Model zoo: architectures behind one factory, and the saved-model format."""

from medsight.models.registry import create_model, get_spec, list_models, register_model
from medsight.models.saved import SavedModel, list_zoo, load_model, save_model

__all__ = ["create_model", "list_models", "register_model", "get_spec", "SavedModel", "load_model", "save_model",
           "list_zoo"]
