"""The dashboard's 30-day chart as SVG geometry: drawn on the server, no script needed.

A bar per business day, stacked by service (the first service at the bottom), on a y axis
from zero to a round amount at or above the busiest day's sum, so every bar's height is
proportional to its sum and the busiest day nearly fills the plot. Coordinates are in the
SVG's own units (its viewBox); the page scales the picture to its width.

Axis labels share one unit and format per axis: all in full ("500,00 сом") or all in
thousands or millions ("0 тыс. сом", "1,5 млн сом"), in the page's language.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from tolom import formatting
from tolom.backoffice.dashboard import Chart
from tolom.money import TYIYN_PER_SOM
from tolom.texts import N_
from tolom.web.i18n import Translator

WIDTH = 720
HEIGHT = 260
LEFT = 84  # room for the axis labels
RIGHT = 36  # room for the last day label ("сегодня")
TOP = 12
BOTTOM = 36  # room for the day labels
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM
BAR_SHARE = 0.7  # of a day's slot; the rest is the gap between bars
TICKS = 4  # at most this many steps above zero
LABEL_EVERY = 5  # a day label under every 5th bar, counted back from today


@dataclass(frozen=True, slots=True)
class Bar:
    """One service's part of one day's bar."""

    day: date
    service: str
    count: int
    total: int  # tyiyn
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Tick:
    value: int  # tyiyn
    y: float


@dataclass(frozen=True, slots=True)
class Column:
    """One day's place on the x axis: its bars, and a label under every LABEL_EVERY-th."""

    day: date
    left: float  # of the day's whole slot (the area that shows its tooltip)
    middle: float  # of its bar
    bars: list[Bar]
    labelled: bool
    today: bool
    count: int
    total: int  # tyiyn


@dataclass(frozen=True, slots=True)
class Layout:
    columns: list[Column]
    ticks: list[Tick]
    scale: int  # the amount (tyiyn) at the top of the plot
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_width: int = PLOT_WIDTH
    plot_height: int = PLOT_HEIGHT
    slot: float = PLOT_WIDTH

    @property
    def bars(self) -> list[Bar]:
        return [bar for column in self.columns for bar in column.bars]

    @property
    def bottom(self) -> int:
        return self.top + self.plot_height

    @property
    def right(self) -> int:
        return self.left + self.plot_width


def nice_step(largest: int, steps: int = TICKS) -> int:
    """The smallest round step (1, 2, 2.5 or 5 × a power of ten, in whole som) of which
    `steps` reach `largest` tyiyn; at least one som."""
    som = max(1, -(-largest // TYIYN_PER_SOM))  # whole som, rounded up
    power = 1
    while True:
        halves: tuple[int, ...] = (25 * power // 10,) if power >= 10 else ()  # not 2.5 som
        for step in (power, 2 * power, *halves, 5 * power):
            if step * steps >= som:
                return step * TYIYN_PER_SOM
        power *= 10


def layout(chart: Chart) -> Layout:
    """Where each bar, tick and day label goes."""
    largest = max((day.total for day in chart.days), default=0)
    step = nice_step(largest)
    steps = max(1, -(-largest // step))
    scale = step * steps
    slot = PLOT_WIDTH / len(chart.days)
    width = slot * BAR_SHARE
    bottom = TOP + PLOT_HEIGHT
    columns: list[Column] = []
    last = len(chart.days) - 1
    for index, day in enumerate(chart.days):
        left = LEFT + index * slot
        x = left + (slot - width) / 2
        bars = []
        stacked = 0
        for service in chart.services:
            tally = day.by_service[service]
            if tally.total == 0:
                continue
            low = bottom - PLOT_HEIGHT * stacked / scale
            stacked += tally.total
            high = bottom - PLOT_HEIGHT * stacked / scale
            bars.append(Bar(day.day, service, tally.count, tally.total, x, high, width, low - high))
        columns.append(
            Column(
                day.day,
                left,
                x + width / 2,
                bars,
                labelled=(last - index) % LABEL_EVERY == 0,
                today=index == last,
                count=day.count,
                total=day.total,
            )
        )
    ticks = [Tick(step * i, bottom - PLOT_HEIGHT * i / steps) for i in range(steps + 1)]
    return Layout(columns, ticks, scale, slot=slot)


# The message of each scaled axis unit (in som) of `formatting.axis_unit`.
_AXIS_UNIT = {
    1_000: N_("dashboard.chart.thousands"),
    1_000_000: N_("dashboard.chart.millions"),
}


def axis_labels(values: list[int], t: Translator) -> dict[int, str]:
    """Each tick's label (tyiyn -> text), every one in the same unit and format: amounts in
    full ("250,00 сом") or all in thousands or millions ("0 тыс. сом", "1,5 млн сом")."""
    unit = formatting.axis_unit(values)
    if unit == 1:
        return {value: t.money(value) for value in values}
    numbers = formatting.axis_numbers(values, unit, english=t.language == "en")
    return {value: t(_AXIS_UNIT[unit], value=n) for value, n in zip(values, numbers, strict=True)}
