"""Path filters shared by the two AST-scan kinds (``*`` matches across ``/``, as in fnmatch)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from pydantic import Field

from montage.ops.checks.base import KindParams


class ScanScope(KindParams):
    include: list[str] = Field(default_factory=lambda: ["*.py"], description="fnmatch globs of files to judge")
    exclude: list[str] = Field(default_factory=list, description="fnmatch globs of files to leave out")

    def selects(self, path: str) -> bool:
        return any(fnmatchcase(path, g) for g in self.include) and not any(fnmatchcase(path, g) for g in self.exclude)
