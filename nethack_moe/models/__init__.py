"""The GAT-MoE actor-critic, its routing, and ``act``: one forward for acting, learning and probes."""
