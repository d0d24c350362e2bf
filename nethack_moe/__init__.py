"""NetHack GAT-MoE."""

__version__ = "0.1.0"
