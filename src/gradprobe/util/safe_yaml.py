"""YAML that cannot outgrow its bytes: nesting, alias expansion and duplicate keys bounded.

`yaml.safe_load` shares an aliased node instead of copying it, so a few hundred bytes of
`&a [*b, *b, ...]` stand for billions of values; the first `str()` or validation that walks them
expands them all (a 482-byte spec once took 3.45 GB). It also recurses once per nesting level
(100,000 nested `[` end in RecursionError) and lets a repeated key silently replace the first
(a whole `runs:` list dropped). Here the nesting is bounded on the event stream, before any node
is built; duplicate keys are refused while building; and the built document, aliases counted
as often as they are used, is bounded before anything else looks at it. `check_document`
applies the same bounds to a dict or list handed over by Python code.
"""

from __future__ import annotations

from typing import Any

import yaml

from gradprobe.errors import InputError

MAX_DEPTH = 32  # nested mappings and lists; a study spec needs 5
MAX_VALUES = 100_000  # values in the document with every alias expanded; the full spec has ~200
MAX_BYTES = 10 * 1024 * 1024  # a study spec is a few kilobytes
# libyaml where PyYAML was built with it: building the resolved 45-run study.yaml (which the
# report reads) takes 0.08 s instead of 0.59 s. The nesting pass below stays on PyYAML's own
# event parser, which reaches MAX_DEPTH before libyaml's scanner would stop at its own limit.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges are allowed to repeat
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: SafeConstructor raises its own error
                continue
            if first != key_node.start_mark.line + 1:
                raise InputError(
                    f"the key {key!r} is written twice in one mapping (lines {first} and "
                    f"{key_node.start_mark.line + 1}); YAML would keep only the last. Fix: "
                    "remove or merge one of them."
                )
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, origin: str) -> Any:
    """Parse one YAML document within the bounds above; `origin` names it in errors.

    Raises `InputError` for a bound exceeded or a duplicate key, `yaml.YAMLError` for YAML
    that does not parse.
    """
    if len(text) > MAX_BYTES:
        raise InputError(f"{origin} is {len(text):,} characters long; a study spec is at most "
                         f"{MAX_BYTES:,}. Fix: pass the right file.")
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events: no recursion, no nodes
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(origin, event.start_mark.line + 1)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    check_document(data, origin)
    return data


def check_document(data: Any, origin: str) -> None:
    """Refuse `data` when, with shared (aliased) parts counted each time they are used, it holds
    more than MAX_VALUES values or nests deeper than MAX_DEPTH (a loop nests for ever).

    Iterative and stops at the first bound passed, so its cost is bounded too.
    """
    count = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise InputError(
                f"{origin} expands to more than {MAX_VALUES:,} values (YAML aliases `*name` "
                "count each time they are used). Fix: write the values out; a study spec needs "
                "a few hundred."
            )
        if isinstance(value, dict):
            children: Any = [*value.keys(), *value.values()]
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth + 1 > MAX_DEPTH and children:
            raise _too_deep(origin, None)
        stack.extend((child, depth + 1) for child in children)


def _too_deep(origin: str, line: int | None) -> InputError:
    where = f" (line {line})" if line is not None else ""
    return InputError(f"{origin} nests lists and mappings more than {MAX_DEPTH} deep{where} (or "
                      "an alias refers to itself). Fix: flatten it; a study spec needs 5 levels.")
