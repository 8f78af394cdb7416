"""A sweep's report folder: `write_report` (folder.py) writes the files, from the tables (tables.py),
the words (markdown.py) and the plots (plots.py)."""

from dps.replay.report.folder import write_report
from dps.replay.report.markdown import console_summary
from dps.replay.report.tables import aggregate, markdown_table

__all__ = ["aggregate", "console_summary", "markdown_table", "write_report"]
