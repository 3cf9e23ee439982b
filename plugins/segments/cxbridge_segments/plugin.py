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


#: How often the scheduler wakes the refit job; the job refits only when the fitted state is missing or older
#: than ``refit_every_seconds`` (so that setting works although jobs are registered before settings load).
JOB_TICK_SECONDS = 300.0


def refit_job(context: PluginContext) -> None:
    """The ``segments.refit`` job: refit quintiles, CLV models and tier bounds and re-score everyone, when the
    cached state is missing or older than ``refit_every_seconds``."""
    from .pipeline import refit, settings_of
    from .state import get_state

    settings = settings_of(context)
    state = get_state(context, settings)
    if state is not None and (context.now - state.fitted_at).total_seconds() < settings.refit_every_seconds:
        return
    stats = refit(context)
    logger.info("segments refit: %d customers scored, tiers %s", stats.customers, stats.tiers)


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
