"""The write-back outbox: trait values and closed-loop actions written into the CRMs. ARCHITECTURE §6.7.

- :func:`plan_writebacks` / :func:`enqueue_action` turn intents into outbox rows (diffed against the CRM's
  last known value, consent-checked, idempotent, human edits respected);
- :func:`deliver` sends due rows in vendor-sized batches with retries, backoff and a dead letter;
- :func:`filter_own_writes` recognises our writes when they come back (no ping-pong);
- :mod:`cxbridge.outbox.admin` lists and re-queues rows (``cxbridge outbox``).
"""

from __future__ import annotations

from .admin import count_by_status, list_items, retry_items
from .deliver import DeliveryReport, backoff_delay, deliver
from .echo import filter_own_writes
from .plan import PlanReport, customer_allows, enqueue_action, plan_writebacks
from .values import idempotency_key, values_equal

__all__ = [
    "DeliveryReport",
    "PlanReport",
    "backoff_delay",
    "count_by_status",
    "customer_allows",
    "deliver",
    "enqueue_action",
    "filter_own_writes",
    "idempotency_key",
    "list_items",
    "plan_writebacks",
    "retry_items",
    "values_equal",
]
