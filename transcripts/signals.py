"""Signals other apps listen to. `judging` depends on `transcripts`, never the reverse, so a finished
transcript announces itself here and judging (in its AppConfig.ready) queues the judge tasks."""

from django.dispatch import Signal

# Sent with `transcripts` (a list of Transcripts just marked done, the call engine's batch) after the
# transaction that finished them commits.
transcripts_finished = Signal()

# Sent by define_experiment (experiments/planning.py), inside its transaction, with `experiment` and `judge` (the judge
# endpoint version the definition chose, or None when no judge endpoint is loaded): judging makes that
# endpoint's rubric versions the experiment's.
experiment_defined = Signal()

# Sent by the cost estimate (experiments/estimate.py) with `judge` (an Endpoint): each receiver returns a list
# of JudgeRequest (same module), the judge requests every finished transcript gets, so the estimate counts them.
judge_requests_wanted = Signal()
