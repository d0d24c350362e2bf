"""Figures computed from logged states and episodes: metric names, statistics, routing, scenarios,
specialization against its baselines, teacher branches, and the verdicts read from them."""
