"""The app's own preferences (QSettings), and how they overlay the engine Settings.

Precedence: command-line flags and IMAGE_SEARCH_* variables (given for this launch) > what the user chose
in the Settings dialog > the config file > defaults. Only values the user changed from those below are
stored, so a value that was never touched keeps following the config file. Every setting of core/config.py
is one (its `descriptor` is the dialog's `new_descriptor`, since an index keeps its own).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Collection
from dataclasses import dataclass

from PySide6.QtCore import QByteArray, QSettings

from core.config import DESCRIPTORS, Settings, flagged_settings, setting_fields

ORGANIZATION = "image-search"
APPLICATION = "desktop"

# Settings fields the dialog edits and QSettings may override: all of them.
SETTING_KEYS = tuple(f.name for f in setting_fields() if f.name != "descriptor")
# The HTTP API server's own settings (core/api/app.py, core/server.py): a change restarts only the server.
API_KEYS = frozenset(k for k in SETTING_KEYS if k.startswith("api_")) | {"max_upload_mb"}
# Changing any of the others needs a new Engine.
ENGINE_KEYS = frozenset(SETTING_KEYS) - API_KEYS
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
        return self.api_enabled != other.api_enabled or any(
            getattr(self.settings, k) != getattr(other.settings, k) for k in API_KEYS
        )


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
        fields = {f.name: f for f in setting_fields()}
        changes = {key: _parse(fields[key], self.store.value(key, type=str)) for key in SETTING_KEYS
                   if key not in locked and self.store.contains(key)}
        settings = base.replace(**changes) if changes else base
        descriptor = self.store.value("new_descriptor", "gem", type=str)
        return Choices(
            settings=settings.validate(),
            new_descriptor=descriptor if descriptor in DESCRIPTORS else "gem",
            api_enabled=self.store.value("api_enabled", True, type=bool),
        )

    def save_choices(self, choices: Choices, base: Settings, locked: Collection[str] = ()) -> None:
        """Store what differs from `base` (flags, environment, config file, defaults) and forget the rest;
        `locked` keys (given for this launch) keep what was stored."""
        for key in SETTING_KEYS:
            value = getattr(choices.settings, key)
            if key in locked:
                continue
            if value == getattr(base, key):
                self.store.remove(key)
            else:
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

    @property
    def sort(self) -> str:
        """How the grid orders results (a key of desktop.results_view.SORTS)."""
        return self.store.value("results/sort", "similarity", type=str)

    @sort.setter
    def sort(self, key: str) -> None:
        self.store.setValue("results/sort", key)

    def folder_scanned(self, folder: str, when: float) -> None:
        """Remember when `folder` was last indexed (seconds since the epoch): the index keeps no such date."""
        self.store.setValue(f"scanned/{_key(folder)}", when)

    def last_scan(self, folder: str) -> float | None:
        value = self.store.value(f"scanned/{_key(folder)}")
        return None if value is None else float(value)

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


def _parse(field, text: str):
    """A stored value (QSettings keeps text) as the type of its Settings field; "" is None where that is allowed.
    Raises ValueError for text that is not of that type (an edited settings file)."""
    kind = str(field.type)
    if kind.startswith("bool"):
        return text.lower() == "true"
    if kind.startswith("int"):
        return int(text)
    if kind.startswith("float"):
        return float(text)
    return None if text == "" and "None" in kind else text


def _key(folder: str) -> str:
    # QSettings keys treat "/" and "\\" as groups: a path is stored under its hex form.
    return folder.encode("utf-8", "surrogateescape").hex()
