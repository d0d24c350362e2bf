"""``nethack-moe sweep SPEC.yaml``: many training runs (rows x seeds), piece by piece.

A spec names a base config, rows (a name, an optional config file of their own and ``--set``
overrides), training seeds and what to do after training. The sweep runs each (row, seed) in
turn through the ``nethack-moe`` CLI, one stage after another, and skips what is finished:

* ``train`` -- done when ``WORK/ROW_sSEED/checkpoints/final.pt`` exists; a run directory with a
  checkpoint but no ``final.pt`` is continued with ``train --resume`` (a kill loses at most one
  checkpoint interval); a run directory holding another experiment is refused, never replaced;
* ``evaluate`` -- E200, sampled and greedy, to ``OUT/ROW_sSEED/eval_E200.json``;
* ``analyze`` -- the specialization figures, to ``OUT/ROW_sSEED/analysis.json``;
* then the run's small outputs (``config.yaml``, ``metrics.jsonl.gz``) are copied to
  ``OUT/ROW_sSEED/`` and ``status.json`` says ``done``.

A stage that fails is recorded in ``status.json`` (stage, exit code, the log's last line) and the
sweep goes on with the next run. The table over all finished runs is written at the end
(:mod:`nethack_moe.analysis.ablation_table`).

The package: :mod:`~nethack_moe.sweep.spec` (the spec file), :mod:`~nethack_moe.sweep.commands`
(the CLI calls), :mod:`~nethack_moe.sweep.stages` (one run, stage by stage, and its status) and
:mod:`~nethack_moe.sweep.launch` (all runs in turn, or a slurm job array).
"""
