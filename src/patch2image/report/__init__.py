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

Heavy imports (matplotlib) wait until a report is built, so the command line starts fast.
"""

import os
import re
from pathlib import Path

from patch2image.errors import UserError

__all__ = ["build_report"]

PAGE_MARKER = "<!-- patch2image report: everything below this line is generated -->"

BOXPLOT_CAPTION = (
    "Jaccard per test image (whole image, threshold of the run), one box per network and row; "
    "x marks the paper's mean (as the paper's Figures 8-11)."
)
PANEL_CAPTION = (
    "Test image {name}: photograph, ground truth, and the probability maps of Image/Scratch, Patch, "
    "Image/Frozen and Image/Fine-tuned, one line per network (as the paper's Figures 6, 12 and 13)."
)
CURVES_CAPTION = (
    "{label}: loss and validation loss (left axis) and learning rate (right axis, dashed) per epoch, "
    "for each phase (as the paper's Figure 7)."
)


def build_report(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    panel_images: list[str] | None = None,
    markdown_page: str | Path | None = None,
) -> Path:
    """Build the report of the given run directories; return the path of the HTML page.

    Parameters
    ----------
    run_dirs : list of paths
        Run directories as ``patch2image train`` writes them, or folders holding such directories.
        Runs of one dataset, network and protocol that differ in their fold are merged. Evaluation
        ``.json`` files of ``patch2image evaluate --model`` make the cross-dataset matrix.
    out_dir : path
        Output folder, created if needed; files in it are overwritten.
    panel_images : list of str, optional
        Names of test images (file stems, e.g. ``01_test``) for the qualitative panels; each dataset
        shows those it has. Default: the first test image of each dataset.
    markdown_page : path, optional
        A Markdown page to write the tables into: its text above the line ``PAGE_MARKER`` is kept,
        everything below is replaced (a new page, or one without the line, is the line and the tables).
    """
    from patch2image.atomic_files import atomic_write, write_text
    from patch2image.evaluation import write_evaluation
    from patch2image.report import figures
    from patch2image.report.cross_dataset import is_evaluation_file, load_evaluation, matrix_tables
    from patch2image.report.html import Page
    from patch2image.report.runs import load_sections, slug
    from patch2image.report.tables import runs_table, section_tables, to_latex, to_markdown

    evaluations = [load_evaluation(Path(p)) for p in run_dirs if is_evaluation_file(Path(p))]
    run_dirs = [p for p in run_dirs if not is_evaluation_file(Path(p))]
    sections = load_sections(run_dirs) if run_dirs else []
    if not sections and not evaluations:
        raise UserError("no run directories to report on")
    out = OutputFolder(out_dir)
    if markdown_page is not None:
        out.check_page(markdown_page)
    available = {section.slug: figures.panel_images(section) for section in sections}
    if panel_images:
        unknown = [n for n in panel_images if not any(n in names for names in available.values())]
        if unknown:
            known = ", ".join(sorted({n for names in available.values() for n in names})) or "none"
            raise UserError(f"--images: no test image named {', '.join(unknown)} in these runs (known: {known})")

    def save_figure(png: bytes, name: str) -> None:
        with atomic_write(out.path("figures", name)) as tmp:
            Path(tmp).write_bytes(png)

    page = Page("patch2image report")
    page.paragraph(
        "Retinal image segmentation by patch-to-image training of fully convolutional networks "
        "(Birgui Sekou et al., arXiv 1904.03892): our runs beside the paper's figures. The paper scores the "
        "whole image, background outside the field of view (FOV) included; the FOV tables score inside it."
    )
    markdown = ["# patch2image report", ""]
    latex = ["% patch2image report: results tables (needs \\usepackage{booktabs})", ""]
    for section in sections:
        page.heading(section.title, anchor=section.slug)
        markdown += [f"## {section.title}", ""]
        for table in section_tables(section):
            page.table(table)
            markdown.append(to_markdown(table))
            latex.append(to_latex(table))
        boxplot = figures.jaccard_boxplot(section)
        if boxplot is not None:
            save_figure(boxplot, f"{section.slug}-jaccard.png")
            page.figure(boxplot, f"{section.title}. {BOXPLOT_CAPTION}")
        names = [n for n in panel_images if n in available[section.slug]] if panel_images else []
        for name in names or available[section.slug][:1]:
            panel = figures.qualitative_panel(section, name)
            if panel is not None:
                save_figure(panel, f"{section.slug}-panel-{_image_slug(name)}.png")
                page.figure(panel, f"{section.title}. {PANEL_CAPTION.format(name=name)}")
        for run in section.runs:
            curves = figures.training_curves(run)
            if curves is not None:
                fold = "" if run.fold is None else f"-fold{run.fold}"
                save_figure(curves, f"{section.slug}-{slug(run.network)}{fold}-curves.png")
                page.figure(curves, CURVES_CAPTION.format(label=f"{section.title}, {run.label}"))
        for group in section.groups:
            if len(group.runs) > 1:
                for row, result in group.results.items():
                    folder = f"{section.slug}-{slug(group.network)}"
                    out.path("metrics", folder, f"{row}.csv")  # write_evaluation writes it beside the JSON
                    write_evaluation(result, out.path("metrics", folder, f"{row}.json"))
    if evaluations:
        page.heading("Across datasets", anchor="cross-dataset")
        markdown += ["## Across datasets", ""]
        for table in matrix_tables(evaluations):
            page.table(table)
            markdown.append(to_markdown(table))
            latex.append(to_latex(table))
    if sections:
        runs = runs_table(sections)
        page.heading("Runs", anchor="runs")
        page.table(runs)
        markdown.append(to_markdown(runs))
        latex.append(to_latex(runs))
    write_text(out.path("tables.md"), "\n".join(markdown))
    if markdown_page is not None:
        _update_page(Path(markdown_page), out.root, markdown[2:])
    write_text(out.path("tables.tex"), "\n".join(latex))
    write_text(out.path("report.html"), page.html())
    return out.root / "report.html"


TOP_FILES = ("tables.md", "tables.tex", "report.html")
TOP_FOLDERS = ("figures", "metrics")


class OutputFolder:
    """The one way the report names what it writes: every path lies inside ``--out`` and is written once.

    Names in a run folder (network, dataset kind, protocol) are checked when the runs are read
    (:mod:`patch2image.report.runs`) and turned into safe slugs; this is the last line: a path that would
    resolve outside the folder (``..``, a link out of it) or one already written by this report is refused.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.resolved = Path(os.path.realpath(self.root))
        self.written: set[Path] = set()

    def path(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        resolved = Path(os.path.realpath(path))
        if not resolved.is_relative_to(self.resolved) or resolved == self.resolved:
            raise UserError(f"{path}: resolves to {resolved}, outside the output folder {self.root}; not written")
        if resolved in self.written:
            raise UserError(f"{path}: two of the report's outputs would be this one file; report these runs separately")
        self.written.add(resolved)
        return path

    def check_page(self, page: str | Path) -> None:
        """``--page`` must not be one of the files the report writes into the output folder."""
        resolved = Path(os.path.realpath(page))
        inside = [self.resolved / name for name in TOP_FILES]
        if resolved in inside or any(resolved.is_relative_to(self.resolved / name) for name in TOP_FOLDERS):
            raise UserError(f"--page {page}: is one of the report's own outputs in {self.root}; give another page")


def _image_slug(name: str) -> str:
    """A test image's name (a file stem from a run folder) as a part of a file name."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def _update_page(page: Path, out: Path, tables: list[str]) -> None:
    from patch2image.atomic_files import write_text

    kept = page.read_text().partition(PAGE_MARKER)[0] if page.is_file() else ""
    folder = Path(os.path.relpath(out.resolve(), page.parent.resolve())).as_posix()
    links = f"Everything in one page: [`{folder}/report.html`]({folder}/report.html)."
    if (out / "figures").is_dir():
        links = f"Figures: [`{folder}/figures/`]({folder}/figures/); e{links[1:]}"
    write_text(page, "\n".join([kept + PAGE_MARKER, "", *tables, links, ""]))
