"""Experiments, one concern a module, each importing only the ones listed before it:

- prompts.py: a definition's prompts before any is sent (the dataset rows, token estimates);
- spec.py: a definition (YAML file, form or API) parsed and validated into a Spec, or a SpecError;
- estimate.py: what a Spec will cost, per endpoint, generation and judging;
- planning.py: define_experiment, the Experiment, its conditions and transcript slots;
- status.py: cancel, and done once no slot is open (used by the call engine and generation, below them);
- actions.py: launch, cancel, resume, retry failed (launching sends work through generation, above it);
- progress.py: slots by status, and an experiment's progress.

The one-way order (generation below actions, above prompts and status) is an import-linter contract in
pyproject.toml.
"""
