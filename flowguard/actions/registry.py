"""Action type -> the function that prepares its request. One entry per module.

Adding an action that reaches the outside world over HTTP is a module with a
``prepare(notice, ctx) -> Outbound`` and a line here; the runner does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flowguard.actions import pagerduty, slack, webhook
from flowguard.actions.outbound import Context, Outbound
from flowguard.engine.decision import Notice
from flowguard.errors import ActionFailed

Prepare = Callable[[Notice, Context], Outbound]

PREPARERS: Mapping[str, Prepare] = {
    "slack": slack.prepare,
    "webhook": webhook.prepare,
    "pagerduty": pagerduty.prepare,
}


def preparer(action_type: str) -> Prepare:
    """The preparer of ``action_type``; an unknown type fails the action, naming it."""
    try:
        return PREPARERS[action_type]
    except KeyError:
        known = ", ".join(sorted(PREPARERS))
        raise ActionFailed(f"no runner for action type {action_type!r} (known: {known})") from None
