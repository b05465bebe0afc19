"""What every PDF of ours shares: the vendored DejaVu Sans (Cyrillic, Kyrgyz letters), a
vector QR code, label–value rows, and a stamp across a document that is no longer valid."""

from __future__ import annotations

from importlib import resources
from typing import Literal

import segno
from fpdf import FPDF
from fpdf.enums import MethodReturnValue, XPos, YPos

from tolom import __version__

FAMILY = "DejaVu"
# Page sizes in millimetres (fpdf2's named A5 warns about a past fix of its own table).
A4 = (210.0, 297.0)
A5 = (148.0, 210.0)
GREY = (90, 90, 90)
RED = (190, 20, 20)
QR_QUIET_MODULES = 4  # the white border a scanner needs around the symbol


def _font(name: str) -> str:
    return str(resources.files("tolom") / "static" / "fonts" / name)


class Document(FPDF):
    """A one-author PDF in DejaVu Sans, with our metadata."""

    def __init__(self, size: tuple[float, float], *, title: str, author: str, margin: float):
        super().__init__(orientation="portrait", unit="mm", format=size)
        self.add_font(FAMILY, "", _font("DejaVuSans.ttf"))
        self.add_font(FAMILY, "B", _font("DejaVuSans-Bold.ttf"))
        self.set_margins(margin, margin, margin)
        self.set_auto_page_break(auto=True, margin=margin)
        self.set_title(title)
        self.set_author(author)
        self.set_creator(f"Tolom {__version__}")
        self.set_lang("ru")
        self.set_font(FAMILY, size=10)

    @property
    def width(self) -> float:
        """The width between the margins."""
        return float(self.w - self.l_margin - self.r_margin)

    def text_style(
        self, size: float, *, bold: bool = False, colour: tuple[int, int, int] = (0, 0, 0)
    ) -> None:
        self.set_font(FAMILY, "B" if bold else "", size)
        self.set_text_color(*colour)

    def line_of_text(
        self,
        text: str,
        size: float,
        *,
        bold: bool = False,
        colour: tuple[int, int, int] = (0, 0, 0),
        align: Literal["L", "C", "R"] = "L",
        link: str | None = None,
        height: float | None = None,
        indent: float = 0,
    ) -> None:
        """A paragraph across the width (less `indent` on the left), wrapped as needed."""
        self.text_style(size, bold=bold, colour=colour)
        self.set_x(self.l_margin + indent)
        self.multi_cell(
            self.width - indent,
            height or size * 0.5,
            text,
            align=align,
            link=link or "",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )

    def field(
        self,
        label: str,
        value: str,
        *,
        label_width: float,
        size: float = 10,
        bold: bool = False,
        x: float | None = None,
        width: float | None = None,
    ) -> None:
        """A grey label and its value beside it; a long value wraps under itself."""
        left = self.l_margin if x is None else x
        total = self.width if width is None else width
        line = size * 0.5
        if self.will_page_break(
            self.field_height(
                label, value, label_width=label_width, size=size, bold=bold, width=total
            )
        ):
            self.add_page()
        top = self.get_y()
        self.text_style(_label_size(size), colour=GREY)
        label_height = self._height(label_width, line, label)
        self.set_xy(left, top)
        self.multi_cell(label_width, line, label, align="L", new_x=XPos.RIGHT, new_y=YPos.TOP)
        self.text_style(size, bold=bold)
        self.set_xy(left + label_width, top)
        self.multi_cell(
            total - label_width, line, value, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        self.set_y(max(self.get_y(), top + label_height) + line * 0.35)

    def field_height(
        self,
        label: str,
        value: str,
        *,
        label_width: float,
        size: float = 10,
        bold: bool = False,
        width: float | None = None,
    ) -> float:
        """How much of the page `field` with these arguments takes."""
        total = self.width if width is None else width
        line = size * 0.5
        self.text_style(_label_size(size), colour=GREY)
        label_height = self._height(label_width, line, label)
        self.text_style(size, bold=bold)
        value_height = self._height(total - label_width, line, value)
        return max(label_height, value_height) + line * 0.35

    def text_height(
        self,
        text: str,
        size: float,
        *,
        bold: bool = False,
        height: float | None = None,
        indent: float = 0,
    ) -> float:
        """How much of the page `line_of_text` with these arguments takes."""
        self.text_style(size, bold=bold)
        return self._height(self.width - indent, height or size * 0.5, text)

    def _height(self, width: float, line: float, text: str) -> float:
        if not text:
            return 0.0
        found = self.multi_cell(width, line, text, dry_run=True, output=MethodReturnValue.HEIGHT)
        assert isinstance(found, float | int)  # what output=HEIGHT returns
        return float(found)

    def rule(self) -> None:
        """A thin line across the page at the current position."""
        self.set_draw_color(170, 170, 170)
        self.set_line_width(0.2)
        y = self.get_y()
        self.line(self.l_margin, y, self.w - self.r_margin, y)
        self.set_y(y + 2)

    def output_bytes(self) -> bytes:
        return bytes(self.output())


def _label_size(size: float) -> float:
    """Labels stay small beside a large value."""
    return min(size * 0.9, 9.0)


def qr_code(pdf: FPDF, data: str, x: float, y: float, size: float, *, link: str = "") -> None:
    """A QR code (never a Micro QR: phones do not read those) as filled rectangles, one per
    run of dark modules, inside `size` mm including its quiet zone; clickable if `link`."""
    symbol = segno.make(data, error="m", micro=False)
    matrix = symbol.matrix
    count = len(matrix) + 2 * QR_QUIET_MODULES
    module = size / count
    left, top = x + QR_QUIET_MODULES * module, y + QR_QUIET_MODULES * module
    pdf.set_fill_color(255, 255, 255)
    pdf.rect(x, y, size, size, style="F")
    pdf.set_fill_color(0, 0, 0)
    # A hair of overlap hides the seams some viewers draw between adjacent rows.
    overlap = module * 0.03
    for r, row in enumerate(matrix):
        c = 0
        while c < len(row):
            if not row[c]:
                c += 1
                continue
            start = c
            while c < len(row) and row[c]:
                c += 1
            pdf.rect(
                left + start * module, top + r * module, (c - start) * module, module + overlap, "F"
            )
    if link:
        pdf.link(x, y, size, size, link)


def stamp(pdf: Document, text: str, *, x: float, y: float, width: float) -> None:
    """A red, framed, slanted word (ОТМЕНЁН, ОПЛАЧЕН…) centred on (x, y)."""
    height = 12.0
    here = pdf.get_x(), pdf.get_y()
    with pdf.rotation(12, x, y):
        pdf.set_draw_color(*RED)
        pdf.set_line_width(0.8)
        pdf.rect(x - width / 2, y - height / 2, width, height)
        pdf.text_style(18, bold=True, colour=RED)
        pdf.set_xy(x - width / 2, y - height / 2)
        pdf.cell(width, height, text, align="C")
    pdf.set_text_color(0, 0, 0)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_xy(*here)
