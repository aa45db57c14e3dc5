"""Settings: CLI flags > IMAGE_SEARCH_* environment variables > config file > defaults.

The config file is TOML at `<user config dir>/image-search/config.toml` (or IMAGE_SEARCH_CONFIG),
with the same keys as the fields below, e.g. `backend = "elasticsearch"`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

APP_NAME = "image-search"
BACKENDS = ("embedded", "elasticsearch")
DESCRIPTORS = ("gem", "fc1")
RUNTIMES = ("auto", "onnxruntime", "tensorflow")
# Names the scan ignores (and counts): hidden files and folders, AppleDouble `._*`, Synology `@eaDir`,
# `.thumbnails`, Lightroom `*.lrdata` previews, Windows `$RECYCLE.BIN`, freedesktop `.Trash-*`.
DEFAULT_EXCLUDE = ".*, ._*, @eaDir, .thumbnails, *.lrdata, $RECYCLE.BIN, .Trash-*"


class ConfigError(Exception):
    """A setting has a value we cannot use. The message says which and why."""


@dataclass(frozen=True)
class Settings:
    backend: str = "embedded"
    data_dir: str = field(default_factory=lambda: platformdirs.user_data_dir(APP_NAME, appauthor=False))
    # "imagenet" (Keras cache / download / bundled copy), "random" (tests and demos only), or a .h5 path
    weights: str = "imagenet"
    descriptor: str | None = None  # None: an existing index's own, "gem" for a new one
    batch_size: int = 16
    runtime: str = "auto"  # VGG16 on "onnxruntime" (faster; "auto" when installed) or "tensorflow"
    es_url: str = "http://127.0.0.1:9200"
    es_index: str = "image-search"
    es_api_key: str | None = None
    es_username: str | None = None
    es_password: str | None = None
    es_ca_certs: str | None = None
    es_timeout_s: float = 5.0
    api_host: str = "127.0.0.1"
    api_port: int = 5000
    api_token: str | None = None  # required when api_host is not a loopback address
    api_cors_origins: str | None = None  # comma separated; CORS stays off when empty
    max_upload_mb: float = 20.0
    # Glob patterns, comma separated (a TOML list also works), of file and folder names the scan ignores;
    # a pattern with a "/" matches the whole path. Replaces the default list, so keep what you still want.
    exclude: str = DEFAULT_EXCLUDE
    # Follow symlinks that lead out of every indexed folder (off, as in digiKam and rclip: a link to `/`
    # or to a network share would otherwise pull in whatever it points at).
    follow_external_symlinks: bool = False

    def exclude_patterns(self) -> tuple[str, ...]:
        """The `exclude` setting as a tuple of glob patterns (empty entries dropped)."""
        return tuple(p.strip() for p in self.exclude.split(",") if p.strip())

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    def validate(self) -> Settings:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.descriptor is not None and self.descriptor not in DESCRIPTORS:
            raise ConfigError(f"unknown descriptor {self.descriptor!r}; choose one of {', '.join(DESCRIPTORS)}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime {self.runtime!r}; choose one of {', '.join(RUNTIMES)}")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        return self

    @classmethod
    def load(cls, overrides: dict | None = None, *, config_file: str | Path | None = None) -> Settings:
        """Defaults, then the config file, then IMAGE_SEARCH_* variables, then `overrides` (None = unset)."""
        values: dict = {}
        path = Path(config_file or os.environ.get("IMAGE_SEARCH_CONFIG") or default_config_file())
        if path.is_file():
            try:
                values.update(tomllib.loads(path.read_text(encoding="utf-8")))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        for f in dataclasses.fields(cls):
            env = os.environ.get(f"IMAGE_SEARCH_{f.name.upper()}")
            if env is not None and env != "":
                values[f.name] = env
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)} (in {path} or the environment)")
        return cls(**{k: _coerce(known[k], v) for k, v in values.items()}).validate()


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def _coerce(f: dataclasses.Field, value):
    kind = str(f.type)
    if kind.startswith("bool"):
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"setting {f.name} must be true or false, got {value!r}")
    if isinstance(value, list):  # a TOML list of patterns
        return ", ".join(str(v) for v in value)
    try:
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {f.name} must be a number, got {value!r}") from exc
    return None if value is None else str(value)
