"""``patch2image report``: the paper's tables and figures from run directories, beside the paper's own.

Writes into the output folder:

- ``report.html``: one self-contained page (tables, and figures inlined as base64 PNG);
- ``tables.md`` and ``tables.tex``: the results tables in Markdown and LaTeX (booktabs);
- ``figures/``: each figure as a PNG (Jaccard box plots, qualitative panels, training curves);
- ``metrics/<dataset>-<network>/<row>.json`` (and ``.csv``): the evaluations of cross-validation runs,
  folds merged.

Evaluation files of ``patch2image evaluate --model ... --json`` among the inputs make the
cross-dataset matrix (models down, datasets across; :mod:`patch2image.report.cross_dataset`).

With ``--page``, the tables also go into a Markdown page (e.g. ``docs/results/drive.md``) below its
hand-written introduction, so the page is regenerated without touching the text above the tables.

The report is built by :mod:`patch2image.report.build`; matplotlib is imported only then, so the command
line starts fast.
"""

from patch2image.report.build import PAGE_MARKER, build_report

__all__ = ["PAGE_MARKER", "build_report"]
