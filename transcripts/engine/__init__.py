"""The one call engine: claim units of work with a lease, call their endpoint with the async `openai` client
under the provider's limits, retry, and record each answer exactly once. Generation (transcripts/generation.py)
and judging (judging/results/judge.py) are two `Job`s it runs; each says only what to ask and how to record the answer.
The design and its measurements: docs/generation.md.

The database is the source of truth; broker messages are hints (DESIGN.md, "Exactly-once").

- One event loop per worker process (a daemon thread) drives every request of that process. A work message
  names a job and an endpoint; its Celery task starts that pair's *driver* on the loop (or, when one already
  runs in this process, pokes it and returns). The driver keeps the server's places filled, in the job's
  order, until nothing is left to claim; so a concurrency-1 local server runs strictly in prefix-grouped order,
  and a duplicate or stale message is harmless. The driver's database work runs off the loop (`home.Home`), so
  the loop never blocks on the database: claims on the task's thread (which waits for its driver anyway),
  recording on a thread and connection of its own, so the two overlap and a slow commit never holds new
  requests (inside a caller's transaction — a test, a management command — or on SQLite, both on the task's
  thread, which sees and makes the caller's changes).
- A claim is one transaction, committed at once: it takes the server's lock (an advisory lock on PostgreSQL;
  SQLite's IMMEDIATE transactions lock the whole database), counts live leases of every job on the server, less
  the driver's claims whose answers are in hand but not recorded yet, so `max_concurrency` holds across every
  process, generation and judging, and claims N rows with ONE
  `UPDATE … WHERE id IN (SELECT … LIMIT N FOR UPDATE SKIP LOCKED)` under one claim token, then loads them with
  what the request needs in one query. Recording, a transaction per batch, locks the rows that still carry
  their claim token and writes them with one UPDATE per kind of outcome, so a driver whose lease was handed to
  someone else cannot write a second result. Costs are charged once per experiment per batch, and the job's
  `recorded` hook runs once.
- On a one-request-at-a-time server (`max_concurrency` 1, the embedded llama.cpp), jobs that both have claimable
  rows share its time by their `turn_share`, in turns of at least TURN_SECONDS × share (`claims.my_turn`): judging
  keeps pace with generation instead of starting only when generation is over. A driver whose turn is over
  stops claiming, and its `work` sends the other job's message (`pass_the_turn`).
- Limits belong to the provider's account (server + key variable, `Endpoint.account`): every HTTP request,
  including each digit request of a digit-by-digit verdict, takes a permit. Requests and tokens per minute are
  paced per account: each process reserves chunks of the account's time from its `AccountPace` row (shared by
  every process) and spaces its own requests inside them. The replies' `x-ratelimit-remaining-*` and
  `x-ratelimit-reset-*` headers hold new requests until the reset when what remains would not cover the
  requests already in flight, and a 429's `Retry-After` holds them too; 429s are counted per experiment.
- Retries (429, 5xx, timeouts, connection errors, malformed replies) back off with jitter, the lease renewed;
  leases of rows still held are renewed as a heartbeat, and a killed worker's rows come back through

Its modules, one concern each: `jobs` (what a job is, the states of leased work), `claims` (claiming, turns,
messages, reconciling), `recording` (writing answers once), `failures` (what is retried), `limits` (limits per
account), `calls` (the HTTP requests and the process's event loop), `home` (a driver's database work, off the loop),
`driver` (a driver, and `work`, `run_claim`
and `call` that start one). What other modules use is named here.
"""

from .calls import CONNECTIONS_PER_CLIENT, Calls
from .claims import claim_next, dispatch, expire_leases, live_requests, pass_the_turn, release_all
from .driver import call, run_claim, work
from .failures import MalformedReply, backoff, classify, first_choice
from .jobs import Answer, Claim, Job, Usage, jobs, register, reset, row_endpoint, worker_stopping
from .limits import estimated_tokens

__all__ = [
    "CONNECTIONS_PER_CLIENT", "Answer", "Calls", "Claim", "Job", "MalformedReply", "Usage", "backoff", "call",
    "claim_next", "classify", "dispatch", "estimated_tokens", "expire_leases", "first_choice", "jobs",
    "live_requests", "pass_the_turn", "register", "release_all", "reset", "row_endpoint", "run_claim", "work",
    "worker_stopping",
]
