"""The rollout log's schema: its columns, the reading settings (`LogSpec`), what was read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dps.config import FieldError, is_number, load

if TYPE_CHECKING:
    import polars as pl

GROUP_COLUMNS = ("step", "prompt_id", "n_rollouts", "n_correct")
RESPONSE_COLUMNS = ("step", "prompt_id", "reward")
#: Every column the reader knows, by its schema name.
SCHEMA_COLUMNS = (
    "step",
    "prompt_id",
    "n_rollouts",
    "n_correct",
    "reward_mean",
    "reward_std",
    "rewards",
    "reward",
    "correct",
    "kind",
    "prompt_key",
)
DEFAULT_THRESHOLD = 0.5
#: File name endings and the format each means.
FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
LAYOUTS = ("group", "response")
ID_MODES = ("dense", "index")


class LogError(ValueError):
    """A rollout log that does not follow the schema."""

    def __init__(self, path: str | Path, column: str | None, row: int | None, message: str):
        self.path, self.column, self.row, self.message = str(path), column, row, message
        where = [str(path)]
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {message}")


def _have_polars() -> bool:
    import importlib.util

    return importlib.util.find_spec("polars") is not None


def _pl() -> Any:
    import polars as pl

    return pl


@dataclass
class LogSpec:
    """How to read one log: its column names, layout, format and correctness rule.

    columns: schema name -> the file's column name, for the names that differ
        (e.g. {"step": "global_step", "prompt_id": "prompt", "reward": "score"}).
    threshold: a response is correct when its score (``correct`` as a float, else ``reward``)
        is >= threshold.
    format / layout: None = from the file name / from the columns present.
    prompt_ids: "dense" maps the user's ids to 0..N-1; "index" takes non-negative integer ids
        as dataset indices as they are (N = largest id + 1; ids never logged are prompts the
        log knows nothing about).
    group_by: per-response logs: extra columns whose values tell two groups of the same
        (step, prompt) apart (a ``kind`` column always does).
    kinds: keep only rows whose ``kind`` is one of these (None: every row).
    """

    columns: dict[str, str] = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD
    format: str | None = None
    layout: str | None = None
    prompt_ids: str = "dense"
    group_by: tuple[str, ...] = ()
    kinds: tuple[str, ...] | None = None

    #: The keys a scenario's [world] table may use for these settings.
    KEYS = ("columns", "threshold", "format", "layout", "prompt_ids", "group_by", "kinds")

    def __post_init__(self) -> None:
        # one name given as a string is that name, not its letters
        if isinstance(self.group_by, str):
            self.group_by = (self.group_by,)
        if isinstance(self.kinds, str):
            self.kinds = (self.kinds,)
        problem = self.problem()
        if problem is not None:
            raise FieldError(*problem)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "log settings") -> LogSpec:
        """From a table of these settings (`dps.config.load`'s rules: group_by and kinds may be one
        string); errors name `where` and the key."""
        spec: LogSpec = load(cls, d, where)
        return spec

    def problem(self) -> tuple[str, str] | None:
        """(key, what is wrong) for the first setting a log cannot be read with, or None."""
        if not isinstance(self.columns, dict) or not all(isinstance(v, str) for v in self.columns.values()):
            return "columns", f"must map schema names to the file's column names (strings), not {self.columns!r}"
        unknown = sorted(set(self.columns) - set(SCHEMA_COLUMNS))
        if unknown:
            return "columns", f"unknown schema name(s) {', '.join(unknown)}; known: {', '.join(SCHEMA_COLUMNS)}"
        if self.format is not None and self.format not in set(FORMATS.values()):
            return "format", f"must be one of {', '.join(sorted(set(FORMATS.values())))}, not {self.format!r}"
        if self.layout is not None and self.layout not in LAYOUTS:
            return "layout", f"must be 'group' or 'response', not {self.layout!r}"
        if self.prompt_ids not in ID_MODES:
            return "prompt_ids", f"must be 'dense' or 'index', not {self.prompt_ids!r}"
        if not is_number(self.threshold) or not math.isfinite(self.threshold):
            return "threshold", f"must be a finite number, not {self.threshold!r}"
        return None

    def check(self, where: str) -> None:
        """Refuse settings a log cannot be read with (changed since construction), naming `where` and the key."""
        problem = self.problem()
        if problem is not None:
            raise ValueError(f"{where}: {problem[0]}: {problem[1]}")

    def file_column(self, name: str) -> str:
        """The file's name for schema column `name`."""
        return self.columns.get(name, name)


@dataclass
class LogInfo:
    """What the reader understood about a log (what `dps validate` prints)."""

    path: str
    format: str
    files: int
    layout: str
    rows: int  # rows in the file(s), before any `kinds` filter
    columns: dict[str, str]  # schema name -> file column, for the columns used
    id_type: str  # "integer" or "string"
    id_mapping: str  # "identity", "dense" or "index"
    num_prompts: int  # distinct prompts in the file(s) (index mode: largest id + 1)
    correctness: str  # where n_correct came from
    threshold: float | None  # None when no threshold was applied
    kinds: tuple[str, ...] | None = None
    #: where each group's graded rewards came from (None: the log has counts alone)
    rewards: str | None = None


@dataclass
class LoadedLog:
    """A log read into per-group rows, with what was understood and the id map."""

    groups: pl.DataFrame
    info: LogInfo
    keys: pl.Series  # the user's prompt id of each dense id 0..N-1
