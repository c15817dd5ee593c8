"""Building the report: the tables, figures and pages of :mod:`patch2image.report` into one output folder."""

import os
import re
from pathlib import Path

from patch2image.atomic_files import atomic_write, write_text
from patch2image.errors import UserError
from patch2image.evaluation import write_evaluation
from patch2image.report.cross_dataset import is_evaluation_file, load_evaluation, matrix_tables
from patch2image.report.html import Page
from patch2image.report.runs import Section, load_sections, slug
from patch2image.report.tables import Table, runs_table, section_tables, to_latex, to_markdown

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
INTRODUCTION = (
    "Retinal image segmentation by patch-to-image training of fully convolutional networks "
    "(Birgui Sekou et al., arXiv 1904.03892): our runs beside the paper's figures. The paper scores the "
    "whole image, background outside the field of view (FOV) included; the FOV tables score inside it."
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
    evaluations = [load_evaluation(Path(p)) for p in run_dirs if is_evaluation_file(Path(p))]
    run_dirs = [p for p in run_dirs if not is_evaluation_file(Path(p))]
    sections = load_sections(run_dirs) if run_dirs else []
    if not sections and not evaluations:
        raise UserError("no run directories to report on")
    out = OutputFolder(out_dir)
    if markdown_page is not None:
        out.check_page(markdown_page)
    document = Document(out)
    if sections:
        _add_sections(document, sections, panel_images)
    if evaluations:
        document.heading("Across datasets", "cross-dataset")
        for table in matrix_tables(evaluations):
            document.table(table)
    if sections:
        document.heading("Runs", "runs", in_markdown=False)
        document.table(runs_table(sections))
    write_text(out.path("tables.md"), "\n".join(document.markdown))
    if markdown_page is not None:
        _update_page(Path(markdown_page), out.root, document.markdown[2:])
    write_text(out.path("tables.tex"), "\n".join(document.latex))
    write_text(out.path("report.html"), document.page.html())
    return out.root / "report.html"


class Document:
    """The report's three forms written side by side: the HTML page, Markdown tables and LaTeX tables."""

    def __init__(self, out: "OutputFolder"):
        self.out = out
        self.page = Page("patch2image report")
        self.page.paragraph(INTRODUCTION)
        self.markdown = ["# patch2image report", ""]
        self.latex = ["% patch2image report: results tables (needs \\usepackage{booktabs})", ""]

    def heading(self, title: str, anchor: str, in_markdown: bool = True) -> None:
        self.page.heading(title, anchor=anchor)
        if in_markdown:
            self.markdown += [f"## {title}", ""]

    def table(self, table: Table) -> None:
        self.page.table(table)
        self.markdown.append(to_markdown(table))
        self.latex.append(to_latex(table))

    def figure(self, png: bytes | None, name: str, caption: str) -> None:
        """A figure into ``figures/`` and onto the page (nothing when there is nothing to draw)."""
        if png is None:
            return
        with atomic_write(self.out.path("figures", name)) as tmp:
            Path(tmp).write_bytes(png)
        self.page.figure(png, caption)


def _add_sections(document: Document, sections: list[Section], panel_images: list[str] | None) -> None:
    """One section per dataset and protocol: its tables, figures, and the merged metrics of its folds."""
    from patch2image.report import figures  # matplotlib: only when a report is built, so the CLI starts fast

    available = {section.slug: figures.panel_images(section) for section in sections}
    if panel_images:
        unknown = [n for n in panel_images if not any(n in names for names in available.values())]
        if unknown:
            known = ", ".join(sorted({n for names in available.values() for n in names})) or "none"
            raise UserError(f"--images: no test image named {', '.join(unknown)} in these runs (known: {known})")
    for section in sections:
        document.heading(section.title, section.slug)
        for table in section_tables(section):
            document.table(table)
        title = section.title
        document.figure(figures.jaccard_boxplot(section), f"{section.slug}-jaccard.png", f"{title}. {BOXPLOT_CAPTION}")
        names = [n for n in panel_images if n in available[section.slug]] if panel_images else []
        for name in names or available[section.slug][:1]:
            document.figure(
                figures.qualitative_panel(section, name),
                f"{section.slug}-panel-{_image_slug(name)}.png",
                f"{title}. {PANEL_CAPTION.format(name=name)}",
            )
        for run in section.runs:
            fold = "" if run.fold is None else f"-fold{run.fold}"
            document.figure(
                figures.training_curves(run),
                f"{section.slug}-{slug(run.network)}{fold}-curves.png",
                CURVES_CAPTION.format(label=f"{title}, {run.label}"),
            )
        _write_merged_folds(document.out, section)


def _write_merged_folds(out: "OutputFolder", section: Section) -> None:
    for group in section.groups:
        if len(group.runs) > 1:
            for row, result in group.results.items():
                folder = f"{section.slug}-{slug(group.network)}"
                out.path("metrics", folder, f"{row}.csv")  # write_evaluation writes it beside the JSON
                write_evaluation(result, out.path("metrics", folder, f"{row}.json"))


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
    kept = page.read_text().partition(PAGE_MARKER)[0] if page.is_file() else ""
    folder = Path(os.path.relpath(out.resolve(), page.parent.resolve())).as_posix()
    links = f"Everything in one page: [`{folder}/report.html`]({folder}/report.html)."
    if (out / "figures").is_dir():
        links = f"Figures: [`{folder}/figures/`]({folder}/figures/); e{links[1:]}"
    write_text(page, "\n".join([kept + PAGE_MARKER, "", *tables, links, ""]))
