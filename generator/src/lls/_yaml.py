"""Copier's YAML files (copier.yml, answers files), read the way Copier reads them.

Copier writes and reads them with PyYAML, which speaks YAML 1.1: lls reads them in YAML 1.1
too, with ruamel.yaml's safe loader (plain data, no Python objects). ruamel.yaml's YAML 1.1
is looser than the specification about floats: it takes `1e9` (a Kubernetes quantity that
Copier writes as a plain string) for the number 1000000000.0. Here a float needs the dot
and the signed exponent that YAML 1.1 asks for (yaml.org/type/float.html), so an answer
comes back exactly as the team gave it. One difference is on purpose: a key given twice is
refused with its line (PyYAML keeps the last one, silently).

lls never writes these files (Copier does), so nothing here needs to keep their comments.
ruamel.yaml parses in C when ruamel.yaml.clib is installed (a dependency of lls).
"""

from __future__ import annotations

import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.resolver import VersionedResolver

_FLOAT = "tag:yaml.org,2002:float"
_YAML_1_1_FLOAT = re.compile(
    r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


class YamlError(ValueError):
    """A text that is not YAML; the message says what and where, in one line."""


class _Resolver(VersionedResolver):
    """ruamel.yaml's YAML 1.1 types, floats as the specification writes them."""

    def add_version_implicit_resolver(
        self, version: Any, tag: Any, regexp: Any, first: Any
    ) -> None:
        if version == (1, 1) and tag == _FLOAT:
            regexp = _YAML_1_1_FLOAT
        super().add_version_implicit_resolver(version, tag, regexp, first)


def load(text: str) -> Any:
    """The data of `text`, as Copier's PyYAML reads it; YamlError when it is not YAML."""
    # A loader per call: one keeps its parser's state, and `lls fleet` reads from threads.
    yaml = YAML(typ="safe")
    yaml.version = (1, 1)
    yaml.Resolver = _Resolver
    try:
        return yaml.load(text)
    except YAMLError as error:
        raise YamlError(_one_line(error)) from None


def _one_line(error: YAMLError) -> str:
    if isinstance(error, MarkedYAMLError) and error.problem:
        where = error.problem_mark or error.context_mark
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        return "; ".join(filter(None, (error.context, f"{error.problem}{at}")))
    return " ".join(str(error).split())
