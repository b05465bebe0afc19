"""A registry file into lines, whatever its kind: the one entry the importers call.

Text registries (QIWI, CSV) are read in this process (`parsing`); an XLSX workbook by a
child process under size and time limits (`xlsx`), which reads its sheet's rows with the
same `parsing` code. This module sits above both, so neither imports the other's caller.
"""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from tolom.reconciliation import xlsx
from tolom.reconciliation.formats import RegistryFormat
from tolom.reconciliation.parsing import ParsedRegistry, read


def parse(
    content: bytes,
    fmt: RegistryFormat,
    agent_zone: ZoneInfo,
    *,
    gateway: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ParsedRegistry:
    """Every payment line of the file, or RegistryError for the first thing wrong with it.

    `gateway`: the agent's txn_ids are numbers ("0090" and "90" are one, as at pay);
    otherwise (the bank, the cash desk) references are compared as written. `progress` is
    told the number of lines read every `parsing.PROGRESS_EVERY` lines.
    """
    if fmt.kind == "xlsx":
        return xlsx.parse_isolated(content, fmt, agent_zone, gateway=gateway, progress=progress)
    return read(content, fmt, agent_zone, gateway=gateway, progress=progress)
