"""The app's own preferences (QSettings), and how they overlay the engine Settings.

Precedence: command-line flags and IMAGE_SEARCH_* variables (given for this launch) > what the user chose
in the Settings dialog > the config file > defaults. Only keys the user actually chose are stored, so a
value that was never touched keeps following the config file.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Collection
from dataclasses import dataclass

from PySide6.QtCore import QByteArray, QSettings

from core.config import DESCRIPTORS, Settings, flagged_settings

ORGANIZATION = "image-search"
APPLICATION = "desktop"

# Settings fields the dialog edits and QSettings may override.
SETTING_KEYS = ("backend", "data_dir", "weights", "es_url", "es_index", "es_api_key", "es_username", "es_password",
                "api_port")
# Changing any of these needs a new Engine; the others (API) only restart the server.
ENGINE_KEYS = frozenset(SETTING_KEYS) - {"api_port"}
DEFAULT_RESULTS = 50


@dataclass(frozen=True)
class Choices:
    """Everything the Settings dialog edits."""

    settings: Settings
    new_descriptor: str = "gem"  # descriptor for an index that has none yet
    api_enabled: bool = True

    def engine_changed(self, other: Choices) -> bool:
        return self.new_descriptor != other.new_descriptor or any(
            getattr(self.settings, k) != getattr(other.settings, k) for k in ENGINE_KEYS
        )

    def api_changed(self, other: Choices) -> bool:
        return (self.api_enabled, self.settings.api_port) != (other.api_enabled, other.settings.api_port)


def locked_keys(args: argparse.Namespace) -> frozenset[str]:
    """Settings given explicitly for this launch (flags or environment): the stored preferences yield to them."""
    flags = set(flagged_settings(args))
    env = {f.name for f in dataclasses.fields(Settings) if os.environ.get(f"IMAGE_SEARCH_{f.name.upper()}")}
    return frozenset(flags | env)


class Preferences:
    """Typed access to the app's QSettings (tests pass a QSettings on a temporary file)."""

    def __init__(self, store: QSettings | None = None):
        self.store = store if store is not None else QSettings(ORGANIZATION, APPLICATION)

    # -- the dialog's choices ---------------------------------------------------------------------
    def choices(self, base: Settings, locked: Collection[str] = ()) -> Choices:
        changes: dict = {}
        for key in SETTING_KEYS:
            if key in locked or not self.store.contains(key):
                continue
            value = self.store.value(key, type=str)
            changes[key] = int(value) if key == "api_port" else (value or None)
        settings = base.replace(**changes) if changes else base
        descriptor = self.store.value("new_descriptor", "gem", type=str)
        return Choices(
            settings=settings.validate(),
            new_descriptor=descriptor if descriptor in DESCRIPTORS else "gem",
            api_enabled=self.store.value("api_enabled", True, type=bool),
        )

    def save_choices(self, choices: Choices, locked: Collection[str] = ()) -> None:
        for key in SETTING_KEYS:
            if key not in locked:
                value = getattr(choices.settings, key)
                self.store.setValue(key, "" if value is None else str(value))
        self.store.setValue("new_descriptor", choices.new_descriptor)
        self.store.setValue("api_enabled", choices.api_enabled)
        self.store.sync()

    # -- indexed folders --------------------------------------------------------------------------
    @property
    def roots(self) -> list[str]:
        return [r for r in self.store.value("roots", [], type=list) if r]

    def add_root(self, folder: str) -> None:
        roots = self.roots
        if folder not in roots:
            self.store.setValue("roots", [*roots, folder])

    def remove_root(self, folder: str) -> None:
        self.store.setValue("roots", [r for r in self.roots if r != folder])

    # -- window state -----------------------------------------------------------------------------
    @property
    def result_count(self) -> int:
        return self.store.value("result_count", DEFAULT_RESULTS, type=int)

    @result_count.setter
    def result_count(self, k: int) -> None:
        self.store.setValue("result_count", k)

    def geometry(self) -> tuple[QByteArray | None, QByteArray | None]:
        return self.store.value("window/geometry"), self.store.value("window/state")

    def splitter_sizes(self) -> list[int] | None:
        sizes = self.store.value("window/splitter", [], type=list)
        return [int(s) for s in sizes] if len(sizes) == 2 else None

    def save_splitter_sizes(self, sizes: list[int]) -> None:
        self.store.setValue("window/splitter", [str(s) for s in sizes])

    def save_geometry(self, geometry: QByteArray, state: QByteArray) -> None:
        self.store.setValue("window/geometry", geometry)
        self.store.setValue("window/state", state)
