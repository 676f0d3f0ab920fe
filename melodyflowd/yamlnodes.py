"""What the two YAML readers (music/chart.py, service/config.py) share for their messages:
the kind of a node, the problem and place of a yaml error, and the line for a document made
to break a parser."""

from __future__ import annotations

from typing import Any

import yaml

_SCALAR_NAMES = {"str": "text", "int": "a number", "float": "a number", "bool": "true/false",
                 "null": "empty"}


def node_kind(node: yaml.Node) -> str:
    """"a list", "a mapping", "empty", or a scalar's kind and value ("text ('x')")."""
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    tag = node.tag.rsplit(":", 1)[-1]
    return f"{_SCALAR_NAMES.get(tag, tag)} ({node.value!r})" if tag != "null" else "empty"


def yaml_problem(exc: yaml.MarkedYAMLError, default: str) -> tuple[str, Any]:
    """What a yaml error says went wrong, and where: (problem, mark), the mark (0-based
    .line, .column, .index) None when yaml knows no place."""
    mark = exc.problem_mark or exc.context_mark
    return (exc.problem or exc.context or default).strip(), mark


def hostile_detail(exc: Exception, what: str) -> str | None:
    """The one line for a document made to break a parser (nesting hundreds of levels deep,
    a number with thousands of digits), or None when `exc` is something else."""
    if isinstance(exc, RecursionError):
        return (f"not {what}: nested too deeply (lists or mappings inside each other "
                "hundreds of levels deep)")
    if isinstance(exc, ValueError) and "digits" in str(exc):   # int() of a giant number
        return f"not {what}: a number with thousands of digits"
    return None
