"""Strict YAML: duplicate keys, merge keys, custom tags and alias bombs rejected; every node located.

:func:`load` returns the data plus a map from each node's path (a tuple of keys / indexes) to its
``(line, column)`` (1-based), so validation errors can say ``file:line:col``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from montage.errors import ValidationFailure

MAX_NODES = 100_000  # constructed nodes per document, counting alias expansions
MAX_BYTES = 1_000_000

PathKey = tuple[str | int, ...]
_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


@dataclass(frozen=True)
class Located:
    """A loaded document and where each of its nodes is."""

    path: Path
    data: Any
    marks: dict[PathKey, tuple[int, int]]

    def where(self, key: PathKey) -> tuple[int, int] | None:
        """The location of ``key`` or of its nearest located ancestor."""
        probe = tuple(key)
        while True:
            if probe in self.marks:
                return self.marks[probe]
            if not probe:
                return None
            probe = probe[:-1]


def _fail(path: Path, message: str, mark: Any | None = None) -> ValidationFailure:
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    return ValidationFailure(message, path=str(path), line=line, column=col)


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ValidationFailure(
            f"byte 0x{raw[exc.start]:02x} is not valid UTF-8; expected a UTF-8 text file",
            path=str(path),
            line=line,
            column=col,
        ) from None


def _check_tabs(path: Path, text: str) -> None:
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip(" ")
        if stripped.startswith("\t"):
            raise ValidationFailure(
                "a tab character is used for indentation; expected spaces (YAML forbids tabs in indentation)",
                path=str(path),
                line=lineno,
                column=len(line) - len(stripped) + 1,
            )


class _Builder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self.marks: dict[PathKey, tuple[int, int]] = {}
        self.constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, key: PathKey) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _fail(
                self.path,
                f"the document expands to more than {MAX_NODES} nodes (alias expansion?); "
                "expected a small phase definition without alias bombs",
                node.start_mark,
            )
        self.marks.setdefault(key, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.ScalarNode):
            if node.tag not in _SCALAR_TAGS:
                raise _fail(self.path, f"unsupported tag {node.tag!r}; expected plain YAML scalars", node.start_mark)
            return self.constructor.construct_object(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise _fail(self.path, f"unsupported tag {node.tag!r}; expected a plain list", node.start_mark)
            return [self.build(child, (*key, i)) for i, child in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise _fail(self.path, f"unsupported tag {node.tag!r}; expected a plain mapping", node.start_mark)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise _fail(
                        self.path, "merge keys ('<<') are not supported; write the keys out", key_node.start_mark
                    )
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _fail(self.path, "a mapping key must be a plain scalar", key_node.start_mark)
                name = self.constructor.construct_object(key_node, deep=True)
                if not isinstance(name, str):
                    name = str(name)
                if name in out:
                    first = self.marks.get((*key, name))
                    where = f" (first defined at line {first[0]})" if first else ""
                    raise _fail(
                        self.path, f"duplicate key {name!r}{where}; expected each key once", key_node.start_mark
                    )
                self.marks[(*key, name)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[name] = self.build(value_node, (*key, name))
            return out
        raise _fail(self.path, "unsupported YAML node", node.start_mark)  # pragma: no cover - exhaustive above


def load_text(path: Path, raw: bytes) -> Located:
    """Parse ``raw`` (the bytes of ``path``) strictly."""
    if len(raw) > MAX_BYTES:
        raise ValidationFailure(f"the file is {len(raw)} bytes; expected at most {MAX_BYTES}", path=str(path))
    text = _decode(path, raw)
    _check_tabs(path, text)
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        context = f" {exc.context}" if exc.context else ""
        raise _fail(path, f"YAML syntax error: {problem}{context}; expected valid YAML", mark) from None
    except yaml.YAMLError as exc:
        raise _fail(path, f"YAML error: {exc}; expected valid YAML") from None
    if node is None:
        raise ValidationFailure("the file is empty; expected a phase mapping", path=str(path), line=1, column=1)
    builder = _Builder(path)
    data = builder.build(node, ())
    return Located(path=path, data=data, marks=builder.marks)


def load(path: Path) -> Located:
    """Read and parse ``path`` strictly."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValidationFailure(f"cannot read the file ({exc.strerror})", path=str(path)) from None
    return load_text(path, raw)
