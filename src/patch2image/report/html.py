"""A self-contained HTML page: tables inline, figures as base64 PNG data URIs, no external resource.

The page ends with a footer that a small script fills in after load: how many images decoded
(``naturalWidth > 0``) out of how many, and how many tables; also as ``data-*`` attributes of
``#render-check``, which the tests read from a headless browser's DOM.
"""

import base64
import html

from patch2image.report.tables import Table, to_html

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0 2em; font-size: 0.85em; }
caption { caption-side: bottom; text-align: left; padding-top: 0.4em; color: #555; max-width: 60em; }
th, td { padding: 0.15em 0.6em; border-bottom: 1px solid #e4e4e4; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.paper td { color: #666; } tr.delta td { color: #666; font-style: italic; }
tr.missing td { color: #b00; } tr.human td { border-top: 1px solid #999; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; }
#render-check { color: #999; font-size: 0.8em; margin-top: 3em; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var tables = document.querySelectorAll("table").length;
  var check = document.getElementById("render-check");
  check.setAttribute("data-images-loaded", loaded);
  check.setAttribute("data-images-total", images.length);
  check.setAttribute("data-tables", tables);
  check.textContent = "Page check: " + loaded + " of " + images.length + " images loaded, " + tables + " tables.";
});
"""


class Page:
    """Builds the page piece by piece, in reading order."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self.contents: list[tuple[str, str]] = []

    def heading(self, text: str, anchor: str | None = None, level: int = 2) -> None:
        if anchor and level == 2:
            self.contents.append((anchor, text))
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def table(self, table: Table) -> None:
        self.parts.append(to_html(table))

    def figure(self, png: bytes, caption: str) -> None:
        data = base64.b64encode(png).decode("ascii")
        alt = html.escape(caption)
        self.parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
        )

    def html(self) -> str:
        toc = "".join(f'<li><a href="#{html.escape(a)}">{html.escape(t)}</a></li>' for a, t in self.contents)
        return "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en"><head><meta charset="utf-8">',
                '<meta name="viewport" content="width=device-width, initial-scale=1">',
                f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>",
                f"<h1>{html.escape(self.title)}</h1>",
                f"<nav><ul>{toc}</ul></nav>" if toc else "",
                *self.parts,
                '<p id="render-check">Page check: not run (scripts disabled).</p>',
                f"<script>{SCRIPT}</script>",
                "</body></html>",
                "",
            ]
        )
