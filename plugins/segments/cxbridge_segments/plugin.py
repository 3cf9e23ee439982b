"""The cxbridge-segments plugin: hook implementations (registered via the ``cxbridge`` entry point).

Heavy imports (numpy, scipy, typer apps) happen inside the hooks, so ``cxbridge --help`` stays fast.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cxbridge import hookimpl

if TYPE_CHECKING:
    from cxbridge.hooktypes import CommandInfo, JobInfo, PluginContext, SettingsInfo, TraitInfo

logger = logging.getLogger(__name__)

#: Rule names seen in the last loaded configuration (so register_traits can declare their traits).
_RULE_NAMES: list[str] = []


@hookimpl
def register_settings() -> Iterable[SettingsInfo]:
    from cxbridge.hooktypes import SettingsInfo

    from .settings import SegmentsSettings

    return [SettingsInfo(namespace="segments", model=SegmentsSettings)]


@hookimpl
def config_loaded(config: Any, settings: Mapping[str, Any]) -> None:
    segments = settings.get("segments") if isinstance(settings, Mapping) else None
    if segments is not None and hasattr(segments, "rules"):
        _RULE_NAMES[:] = list(segments.rules)


@hookimpl
def register_traits() -> Iterable[TraitInfo]:
    from .settings import RULE_NAMES_SEEN
    from .traits import trait_infos

    return trait_infos(sorted(set(_RULE_NAMES) | RULE_NAMES_SEEN))


@hookimpl
def customers_changed(context: PluginContext, customer_ids: Sequence[str]) -> None:
    if not customer_ids:
        return
    from .pipeline import rescore

    stats = rescore(context, customer_ids)
    logger.debug("segments re-scored %d customers (%d events, %d rule errors)",
                 stats.customers, stats.events, stats.rule_errors)


#: How often the scheduler wakes the refit job; the job refits only when it must (see :func:`refit_job`), so
#: ``refit_every_seconds`` works although jobs are registered before settings load.
JOB_TICK_SECONDS = 300.0


def refit_job(context: PluginContext) -> None:
    """The ``segments.refit`` job: refit quintiles, CLV models and tier bounds and re-score everyone when the
    stored state is missing, provisional, older than ``refit_every_seconds``, fitted on a purchaser population
    that has since grown by more than ``refit_growth_share``, or was fitted during incremental scoring and not
    yet applied to every customer."""
    from .pipeline import refit, settings_of, state_is_stale
    from .state import get_state

    settings = settings_of(context)
    state = get_state(context, settings)
    reason = state_is_stale(context, settings, state)
    if reason is None and state is not None and not state.diagnostics.get("scored_all", True):
        reason = "fitted during scoring, not yet applied to every customer"
    if reason is None:
        return
    stats = refit(context)
    logger.info("segments refit (%s): %d customers scored, tiers %s", reason, stats.customers, stats.tiers)


@hookimpl
def register_jobs() -> Iterable[JobInfo]:
    from cxbridge.hooktypes import JobInfo

    return [
        JobInfo(name="segments.refit", func=refit_job, every_seconds=JOB_TICK_SECONDS,
                description="Refit RFM quintiles, CLV models and tier boundaries; re-score all customers")
    ]


@hookimpl
def register_commands() -> Iterable[CommandInfo]:
    from cxbridge.hooktypes import CommandInfo

    from .cli import app

    return [CommandInfo(name="segments", app=app, help="Customer segments: RFM, value tiers, CLV, rules")]
