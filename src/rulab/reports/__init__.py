"""Views of the results database: HTML tables, figures and the single-file HTML report.

matplotlib (``pip install 'rulab[report]'``) is imported only when a figure is drawn.
"""

from rulab.reports.blocks import pivot_html, records_pivot
from rulab.reports.evaluation import evaluation_report
from rulab.reports.html import build_report, mean_table
from rulab.reports.tables import paper_table_html
from rulab.reports.toy2d import toy2d_report, toy2d_section

__all__ = [
    "build_report",
    "evaluation_report",
    "mean_table",
    "paper_table_html",
    "pivot_html",
    "records_pivot",
    "toy2d_report",
    "toy2d_section",
]
