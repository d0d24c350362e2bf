"""The NetHack knowledge graph that the GAT reads, and its activation from scene atoms."""
