"""YAML as imgdiff's own files use it (claims files, watch manifests): safe, and no key given twice."""

from __future__ import annotations

from typing import Any

import yaml


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping naming one key twice.

    YAML says keys are unique, but PyYAML keeps the last value: a claim with ``assert: absent_after`` and
    a second ``assert: present_before`` would be judged as the second, without a word.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *anchor": PyYAML expands it below
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                twice = key in seen
            except TypeError:  # an unhashable key: construct_mapping says so itself
                break
            if twice:
                m = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    problem=f"key {key!r} is given twice (line {m.line + 1}, column {m.column + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """Parse YAML text like ``yaml.safe_load``, refusing any mapping that gives one key twice.

    Raises
    ------
    yaml.YAMLError
        Invalid YAML, or a key given twice (the message names the key, line and column).
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
