"""Specialization figures that a regulariser cannot fake (PROTOCOL.md, "Specialization figures,
each next to its baseline")."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nethack_moe.evaluation import StateLog


def hint_follow_share(st: StateLog) -> float | None:
    """Share of the steps with a navigation hint on which the hinted move was taken (``None``
    without such steps)."""
    has = st.hint >= 0
    n = int(has.sum())
    return float((st.action[has] == st.hint[has]).mean()) if n else None
