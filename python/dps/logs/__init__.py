"""Rollout logs: the schema, reading (any trainer's files), writing, aggregation and validation.

The log belongs to no single part of dps: the trainer and the framework integrations write it
(`RolloutLogWriter`), replay and `dps validate` read it (`load_log`, `read_log`).

Files: Parquet, CSV, JSONL (one JSON object a line; `.json` holding one array of objects too),
or a folder of such files (read in the order of their names, numbers compared as numbers, as
verl writes `1.jsonl`, `2.jsonl`, ...). Parquet, CSV and JSONL are scanned lazily and only the
columns the log needs are read (a completion-text column costs nothing).

Two layouts (docs/rollout-logs.md):

* per group, one row per (step, prompt) group: ``step``, ``prompt_id``, ``n_rollouts``,
  ``n_correct``, optionally ``reward_mean`` (float) and ``rewards`` (list of floats, one per
  response);
* per response, one row per scored response: ``step``, ``prompt_id``, and ``reward`` (float)
  and/or ``correct`` (bool, 0/1 integer or a float score). It is aggregated into groups; a
  response counts as correct when ``correct`` is true (a float ``correct`` or, without that
  column, ``reward`` when it is >= the threshold, 0.5 by default, so a small format bonus on a
  wrong answer does not count as correct).

Either layout may hold a ``kind`` column (e.g. "train" / "sweep"); its rows per kind are
reported, and `LogSpec.kinds` keeps only some kinds. A file's own column names are mapped onto
these with `LogSpec.columns` (e.g. ``{"step": "global_step", "prompt_id": "prompt"}``).

Prompt ids may be integers of any range or strings (hashes, the prompt text): inside, prompts
get dense ids ``prompt_id`` 0..N-1 (in the sorted order of the user's ids; ids that already are
0..N-1 stay as they are) and the user's own id is kept in ``prompt_key``; `LoadedLog.keys` and
`prompt_keys` map dense ids back. A file that holds a ``prompt_key`` column (as the logs that
``dps replay --write-logs`` writes do: the dense id beside the user's id) is read by its
``prompt_key``: that is the prompt's own id, and its ``prompt_id`` must pair with it one to
one. Steps are the log's own values, never shifted or padded. The same (step, prompt) may
appear more than once (extra generation rounds, an epoch wrap-around, a training group and an
evaluation sweep at the same step): each such group stays its own row.

Every check raises `LogError` (a ValueError) naming the file, the file's column and the first
bad row (0-based row number in that file as read).
"""

from dps.logs.check import aggregate_responses, normalise, prompt_keys
from dps.logs.describe import describe, explain
from dps.logs.read import frame_to_groups, load_frame, load_log, read_log, validate_frame
from dps.logs.schema import (
    DEFAULT_THRESHOLD,
    FORMATS,
    GROUP_COLUMNS,
    RESPONSE_COLUMNS,
    SCHEMA_COLUMNS,
    LoadedLog,
    LogError,
    LogInfo,
    LogSpec,
)
from dps.logs.write import LOG_COLUMNS, RolloutLogWriter, groups_frame, write_log

__all__ = [
    "DEFAULT_THRESHOLD",
    "FORMATS",
    "GROUP_COLUMNS",
    "LOG_COLUMNS",
    "RESPONSE_COLUMNS",
    "SCHEMA_COLUMNS",
    "LoadedLog",
    "LogError",
    "LogInfo",
    "LogSpec",
    "RolloutLogWriter",
    "aggregate_responses",
    "describe",
    "explain",
    "frame_to_groups",
    "groups_frame",
    "load_frame",
    "load_log",
    "normalise",
    "prompt_keys",
    "read_log",
    "validate_frame",
    "write_log",
]
