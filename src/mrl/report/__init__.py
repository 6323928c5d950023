"""Turn evaluation records (JSON) into Markdown/HTML tables and matplotlib plots."""

from mrl.report.aggregate import aggregate
from mrl.report.render import write_report

__all__ = ["aggregate", "write_report"]
