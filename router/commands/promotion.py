"""Promoting a version a command produced (`train`, `calibrate`) and announcing it to running replicas."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from classifier.registry import ActiveVersionChangedError, ModelRegistry

if TYPE_CHECKING:
    from router.hot_reload import Announcement


def promote_and_announce(
    registry: ModelRegistry, version: str, expected_active: str, command: str, retry: str, config: str | None
) -> int:
    """Promote `version` if `expected_active` (what the command compared with or derived from) is still the
    active version, and announce it, under the registry's lock as `models promote` does, so that Redis
    ends up naming the version ACTIVE names. The announcement goes to the Redis of `config` (the command's
    `--config`, else MOA_ROUTER_CONFIG), the config whose data directory holds `registry`. 0, or 1 when
    another version was promoted meanwhile (`retry` says what to do) or Redis could not be told."""
    from router.hot_reload import announce_promotion

    with registry.lock():
        try:
            registry.promote(version, expected_active=expected_active)
        except ActiveVersionChangedError as exc:
            print(f"not promoted: {exc}; {retry}")
            return 1
        print(f"promoted {version}")
        announcement = announce_promotion(version, config)
    return report_announcement(announcement, command)


def report_announcement(announcement: Announcement, command: str) -> int:
    """Print what the announcement did; 1 when Redis was not told (replicas started later would load the
    previously announced version), else 0."""
    if not announcement.ok:
        print(f"moa-router {command}: {announcement.message}", file=sys.stderr)
        return 1
    print(announcement.message)
    return 0
