"""The results tables, as data, and their Markdown, LaTeX and HTML renderings.

Per section (dataset) four tables: the two protocols (``whole``, ``fov``) times the two aggregations
(``mean`` over images, the paper's; ``pooled`` pixels). Per network the rows Patch, Image/Frozen,
Image/Fine-tuned and Image/Scratch, then the second observer. The paper's figures are whole-image means,
so only the whole-image mean table puts them beside ours, with the difference (ours - paper).
"""

import html
import math
from dataclasses import dataclass, field

from patch2image.evaluation import ROW_LABELS, ROWS
from patch2image.metrics import METRIC_LABELS, METRICS
from patch2image.networks import network_label
from patch2image.paper_results import IDRID_CHALLENGE_BEST_JACCARD, TABLES, paper_value
from patch2image.report.runs import SECOND_OBSERVER, Section

PROTOCOL_LABELS = {
    "whole": "whole image (background outside the field of view included, as in the paper)",
    "fov": "inside the field of view (FOV) only",
}
AGGREGATION_LABELS = {"mean": "mean over test images (the paper's aggregation)", "pooled": "all test pixels pooled"}
MISSING = "—"
DELTA = "Δ"


@dataclass
class Table:
    """A table as strings: ``kinds`` tags each row (ours, paper, delta, missing, human) for styling.

    ``blocks``: a row whose first cell is set starts a block (a network), ruled off in LaTeX.
    """

    key: str
    title: str
    caption: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    blocks: bool = False
    numeric: int = 0  # how many trailing columns hold numbers (right-aligned)

    def add(self, cells: list[str], kind: str = "ours") -> None:
        self.rows.append(cells)
        self.kinds.append(kind)


def _number(value) -> str:
    if value is None:
        return MISSING
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _difference(ours, paper) -> str:
    if ours is None or paper is None or math.isnan(ours):
        return ""
    return f"{ours - paper:+.4f}"


def results_table(section: Section, protocol: str, aggregation: str) -> Table:
    """One protocol and one aggregation of a section: per network the four rows, then the human reference."""
    with_paper = protocol == "whole" and aggregation == "mean" and section.dataset in TABLES
    title = f"{section.title}: {protocol_title(protocol)}, {aggregation_title(aggregation)}"
    table = Table(
        key=f"{section.slug}-{protocol}-{aggregation}",
        title=title,
        caption=_caption(section, protocol, aggregation, with_paper),
        header=["Network", "Row", "Source", *(METRIC_LABELS[m] for m in METRICS)],
        blocks=True,
        numeric=len(METRICS),
    )
    for group in section.groups:
        folds = len(group.runs)
        for index, row in enumerate(ROWS):
            name = network_label(group.network) if index == 0 else ""
            result = group.results.get(row, {}).get(protocol)
            if result is None:
                table.add([name, ROW_LABELS[row], "missing", *[MISSING] * len(METRICS)], "missing")
            else:
                ours = result[aggregation]
                source = "ours" if group.coverage[row] == folds else f"ours ({group.coverage[row]}/{folds} folds)"
                table.add([name, ROW_LABELS[row], source, *(_number(ours[m]) for m in METRICS)])
            if with_paper and any(paper_value(section.dataset, group.network, row, m) is not None for m in METRICS):
                paper = [paper_value(section.dataset, group.network, row, m) for m in METRICS]
                table.add(["", "", "paper", *(_number(v) if v is not None else "" for v in paper)], "paper")
                if result is not None:
                    ours = result[aggregation]
                    diffs = [_difference(ours[m], v) for m, v in zip(METRICS, paper, strict=True)]
                    table.add(["", "", DELTA, *diffs], "delta")
    human = (section.second_observer() or {}).get(protocol)
    if human is not None:
        values = human[aggregation]
        table.add(["Human", "2nd observer", "ours", *(_number(values[m]) for m in METRICS)], "human")
    return table


def _scored(group, protocol: str) -> str:
    """``12 test images, 3 cross-validation folds merged`` (or ``4 test images``) for one network."""
    images = max((len(r[protocol]["images"]) for r in group.results.values() if protocol in r), default=0)
    folds = len(group.runs)
    return f"{images} test images" + (f", {folds} cross-validation folds merged" if folds > 1 else "")


def protocol_title(protocol: str) -> str:
    return {"whole": "whole image", "fov": "inside the FOV"}[protocol]


def aggregation_title(aggregation: str) -> str:
    return {"mean": "mean over images", "pooled": "pooled pixels"}[aggregation]


def _caption(section: Section, protocol: str, aggregation: str, with_paper: bool) -> str:
    results = [r[protocol] for g in section.groups for r in g.results.values() if protocol in r]
    thresholds = {r.get("threshold") for r in results}
    threshold = f"threshold {thresholds.pop():g}" if len(thresholds) == 1 and None not in thresholds else None
    scored = {network_label(g.network): _scored(g, protocol) for g in section.groups}
    if len(set(scored.values())) <= 1:
        extent = next(iter(scored.values()), "0 test images")
    else:  # the networks were run on different folds: say which covers what
        extent = "; ".join(f"{network}: {what}" for network, what in scored.items())
    parts = [
        f"Scored {PROTOCOL_LABELS[protocol]}, {threshold or 'thresholds chosen on the validation images'}, "
        f"{AGGREGATION_LABELS[aggregation]}; {extent}."
    ]
    if with_paper:
        parts.append(
            f"Paper: the paper's {TABLES[section.dataset]} (whole image, mean over images); "
            f"{DELTA} = ours - paper. Blank: not reported."
        )
    elif section.dataset in TABLES:
        parts.append("The paper reports whole-image means only: see that table for its figures.")
    if section.dataset == "idrid":
        parts.append(f"IDRiD challenge's best entry: Jaccard {IDRID_CHALLENGE_BEST_JACCARD:.4f}.")
    if any(SECOND_OBSERVER in g.results for g in section.groups):
        parts.append("Human: the second observer scored against the first.")
    return " ".join(parts)


def runs_table(sections: list[Section]) -> Table:
    """Which run directories the report reads, with their configuration and wall times."""
    table = Table(
        key="runs",
        title="Runs",
        caption=(
            "The run directories this report reads. Epochs: those each phase ran of the most its configuration "
            "allows (patch / fine-tune / scratch; patch stops early without improvement); Patch-row stride: the "
            "stride of patch-mode inference for the Patch row (paper: 2); wall-clock seconds per training phase."
        ),
        header=[
            "Run",
            "Dataset",
            "Network",
            "Fold",
            "Parameters",
            "Epochs",
            "Patch-row stride",
            "Patch (s)",
            "Fine-tune (s)",
            "Scratch (s)",
        ],
        numeric=3,
    )
    for section in sections:
        for run in section.runs:
            seconds = run.info.get("wall_seconds") or {}
            parameters = run.info.get("parameters")
            table.add(
                [
                    run.name,
                    section.title,
                    network_label(run.network),
                    "" if run.fold is None else str(run.fold),
                    f"{parameters:,}" if isinstance(parameters, int) else "",
                    " / ".join(_epochs(*run.epochs(phase)) for phase in ("patch", "finetune", "scratch")),
                    str((run.config.get("evaluation") or {}).get("patch_stride", "")),
                    *(_seconds(seconds.get(phase)) for phase in ("patch", "finetune", "scratch")),
                ]
            )
    return table


def _epochs(ran: int, allowed: int | None) -> str:
    return str(ran) if allowed is None else f"{ran} of {allowed}"


def _seconds(value) -> str:
    return MISSING if value is None else f"{float(value):.1f}"


def section_tables(section: Section) -> list[Table]:
    return [results_table(section, p, a) for a in ("mean", "pooled") for p in ("whole", "fov")]


def to_markdown(table: Table) -> str:
    def line(cells):
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    align = ["---"] * (len(table.header) - table.numeric) + ["---:"] * table.numeric
    lines = [f"### {table.title}", "", line(table.header), "| " + " | ".join(align) + " |"]
    lines += [line(row) for row in table.rows]
    return "\n".join([*lines, "", table.caption, ""])


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}"}
_LATEX_SPECIAL |= {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}
_LATEX_SPECIAL |= {MISSING: "--", DELTA: r"$\Delta$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def to_latex(table: Table) -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
    spec = "l" * (len(table.header) - table.numeric) + "r" * table.numeric
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}. {latex_escape(table.caption)}}}",
        rf"\label{{tab:{table.key}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(cell) for cell in table.header) + r" \\",
        r"\midrule",
    ]
    for index, row in enumerate(table.rows):
        if table.blocks and index and row[0]:
            lines.append(r"\midrule")  # a rule before each network's block
        lines.append(" & ".join(latex_escape(cell) for cell in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def to_html(table: Table) -> str:
    first_number = len(table.header) - table.numeric

    def cells(tag: str, row: list[str]) -> str:
        return "".join(
            f'<{tag} class="num">{html.escape(c)}</{tag}>' if i >= first_number else f"<{tag}>{html.escape(c)}</{tag}>"
            for i, c in enumerate(row)
        )

    body = []
    for row, kind in zip(table.rows, table.kinds, strict=True):
        body.append(f'<tr class="{kind}">{cells("td", row)}</tr>')
    return (
        f'<table id="table-{html.escape(table.key)}"><caption><strong>{html.escape(table.title)}.</strong> '
        f"{html.escape(table.caption)}</caption><thead><tr>{cells('th', table.header)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )
