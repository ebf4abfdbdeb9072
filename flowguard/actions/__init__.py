"""Actions that reach the outside world: Slack, webhooks, PagerDuty.

The live app builds one :class:`ActionRunner` and awaits ``deliver(notice)``
for each notice the engine decided; the result goes into the execution log.
"""

from flowguard.actions.delivery import DeliveredCache, DeliveryStore, RedisDeliveryStore
from flowguard.actions.runner import ActionRunner
from flowguard.actions.safety import AllowList
from flowguard.actions.settings import ActionSettings

__all__ = [
    "ActionRunner",
    "ActionSettings",
    "AllowList",
    "DeliveredCache",
    "DeliveryStore",
    "RedisDeliveryStore",
]
