"""Which knowledge bases a signed-in person may not see (docs/security.md "Roles").

The knowledge base does not know the service's workgroups (``kefu`` sits above ``kbase``): the
app that restricts knowledge bases to workgroups registers one function here
(:func:`hidden_register`, ``kefu.supervision``), and the staff search asks
:func:`hidden_ids` for the ones to leave out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_hidden: list[Callable[[Any], set[int]]] = []


def hidden_register(fn: Callable[[Any], set[int]]) -> None:
    """Add ``fn(user) -> set of knowledge base ids`` that ``user`` may not see (idempotent)."""
    if fn not in _hidden:
        _hidden.append(fn)


def hidden_ids(user: Any) -> set[int]:
    """The ids of the knowledge bases ``user`` may not see (the union of every registered
    function's answer); empty when none is registered."""
    out: set[int] = set()
    for fn in _hidden:
        out |= fn(user)
    return out
