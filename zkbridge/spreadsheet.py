"""CSV files people open in spreadsheets: no cell may run as a formula (CSV injection).

defusedcsv (a well-kept drop-in for the csv module) prefixes a quote to cells beginning with = + - @ | % (numbers
like -12.5 excepted). OWASP also lists a leading tab or carriage return, which defusedcsv leaves: such cells get
the same quote here. `unescape` undoes both, so an export imported back (the plan map) is exact."""

from __future__ import annotations

import re
from typing import Any

from defusedcsv import csv as defused

FORMULA = "=+-@|%"
WHITESPACE_THEN_FORMULA = re.compile(r"^[\t\r\n ]+[=+\-@|%]")


def _guard(value: Any) -> Any:
    if isinstance(value, str) and WHITESPACE_THEN_FORMULA.match(value):
        return "'" + value
    return value


class _Writer:
    def __init__(self, out) -> None:
        self.inner = defused.writer(out)

    def writerow(self, row) -> None:
        self.inner.writerow([_guard(value) for value in row])

    def writerows(self, rows) -> None:
        for row in rows:
            self.writerow(row)


def writer(out) -> _Writer:
    """A csv writer whose cells never run as formulas."""
    return _Writer(out)


def unescape(value: str) -> str:
    """A cell as it was before writer() neutralised it."""
    if len(value) < 2 or value[0] != "'":
        return value
    rest = value[1:]
    if (rest[0] in FORMULA or rest.startswith("\\|")) and not re.match(r"^-?[0-9,\.]+$", rest):
        return rest.replace("\\|", "|")  # defusedcsv escaped the pipes of the cell it quoted
    if WHITESPACE_THEN_FORMULA.match(rest):
        return rest
    return value
