"""Explaining a checkpoint: probes and interventions, ``analyze``, plots, tables over training runs."""
