"""Playing policies and baselines: players, the episode runner, E200 ``evaluate``, ``watch``, replays."""
