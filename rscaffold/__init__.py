"""reasoning-scaffold: distil the flow of a reasoning model's thinking into a small language model."""

__version__ = "0.1.0"
