"""Neural network building blocks: encoders and decoders."""

from .gru import GRUEncoder
from .mlp import MLP, MLPDecoder, MLPEncoder
from .weight_norm import BoundedWeightNorm, BoundedWeightNormLinear, WNIEncoder

__all__ = ["MLP", "MLPDecoder", "MLPEncoder"]
__all__ += ["BoundedWeightNorm", "BoundedWeightNormLinear", "GRUEncoder", "WNIEncoder"]
__all__[:] = sorted(set(__all__))
