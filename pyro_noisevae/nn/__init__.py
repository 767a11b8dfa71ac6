"""Neural network building blocks: encoders and decoders."""

from .mlp import MLP, MLPDecoder, MLPEncoder

__all__ = ["MLP", "MLPDecoder", "MLPEncoder"]
__all__[:] = sorted(set(__all__))
