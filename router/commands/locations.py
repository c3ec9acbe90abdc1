"""Where the classifier commands find the versions: the directory the service with the same config reads.

The service reads classifier versions from `<data_dir>/models` of its config (MOA_ROUTER_DATA_DIR
overriding the config's `data_dir`); `score`, `train`, `calibrate`, `models` and `evaluate` must use that
directory, or a version they promote is one the service cannot load. Without a config (no `--config`, no
MOA_ROUTER_CONFIG) it is MOA_ROUTER_DATA_DIR's, else ./.moa-router's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from classifier.registry import default_models_dir
from router.config import ConfigError, Settings, load_settings

EXIT_BAD_CONFIG = 2


def add_config_option(parser: argparse.ArgumentParser, uses: str, default: str | None = None) -> None:
    """`--config FILE`, as `serve` takes it; `uses` says what the command takes from it. A sub-command's
    parser passes `default=argparse.SUPPRESS`, so that a --config given before the sub-command is kept."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help=f"the service's YAML config (default: $MOA_ROUTER_CONFIG): {uses}",
    )


def service_settings(config: str | None) -> Settings | None:
    """The settings the service reads (`config`, else MOA_ROUTER_CONFIG), or None when there is no config.
    Raises ConfigError when the file cannot be read or is invalid."""
    if config or os.environ.get("MOA_ROUTER_CONFIG"):
        return load_settings(config)
    return None


def models_dir_of(settings: Settings | None) -> Path:
    """The service's classifier versions directory for `settings` (None: no config)."""
    return default_models_dir() if settings is None else settings.data_dir / "models"


def models_dir(command: str, config: str | None) -> Path | None:
    """The directory of the versions the service with `config` (else MOA_ROUTER_CONFIG) loads; None, with one
    line on stderr, when that config cannot be read (the command then ends with EXIT_BAD_CONFIG)."""
    try:
        return models_dir_of(service_settings(config))
    except ConfigError as exc:
        print(f"moa-router {command}: {exc}", file=sys.stderr)
        return None
