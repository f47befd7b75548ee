"""One exception type for bad input, so every stage reports problems the same way.

The CLI turns an InputError into a single line `vgsalign <stage>: <file>: <problem>`
and exit status 2; nothing else is printed, so the line is what a person sees in the log.
"""

from __future__ import annotations

from os import PathLike


class InputError(Exception):
    """Bad input that the user can fix: names the file (or setting) and the problem."""

    def __init__(self, where: str | PathLike | None, problem: str):
        self.where = None if where is None else str(where)
        self.problem = problem
        super().__init__(problem if self.where is None else f"{self.where}: {problem}")
