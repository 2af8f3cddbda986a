"""Check neural (or any) generative models against grid reference solutions of their MFG."""

from .metrics import density_metrics, kl_divergence, wasserstein2
from .models import ModelError, as_model, load_model
from .validator import validate_flow, validate_score

__all__ = ["ModelError", "as_model", "density_metrics", "kl_divergence", "load_model", "validate_flow",
           "validate_score", "wasserstein2"]
