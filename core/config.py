"""Settings: CLI flags > IMAGE_SEARCH_* environment variables > config file > defaults.

The config file is TOML at `<user config dir>/image-search/config.toml` (or IMAGE_SEARCH_CONFIG),
with the same keys as the fields below, e.g. `backend = "elasticsearch"`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from core.errors import CONFIG, UserError

APP_NAME = "image-search"
BACKENDS = ("embedded", "elasticsearch")
DESCRIPTORS = ("gem", "fc1")
RUNTIMES = ("auto", "onnxruntime", "openvino", "tensorflow", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "int8")
# Names the scan ignores (and counts): hidden files and folders, AppleDouble `._*`, Synology `@eaDir`,
# `.thumbnails`, Lightroom `*.lrdata` previews, Windows `$RECYCLE.BIN`, freedesktop `.Trash-*`.
DEFAULT_EXCLUDE = ".*, ._*, @eaDir, .thumbnails, *.lrdata, $RECYCLE.BIN, .Trash-*"
KEEPER_RULES = ("reference", "resolution", "size", "oldest")  # core.duplicates.RULE_REASONS gives each a reason
DEFAULT_KEEPER_RULES = ", ".join(KEEPER_RULES)


class ConfigError(UserError):
    """A setting has a value we cannot use. The message says which and why."""

    kind = CONFIG
    title = "Invalid setting"


def setting(default, help: str, *, flag: bool = True, choices: tuple[str, ...] | None = None,
            secret: bool = False, factory=None):
    """A Settings field with what every front end derives from it: its help text, whether it has a
    command-line flag (`--name-with-dashes`), its choices, and whether it is secret (never shown)."""
    metadata = {"help": help, "flag": flag, "choices": choices, "secret": secret}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Every setting, defined once: the CLI's flags, the IMAGE_SEARCH_<NAME> variables, the config file's
    keys and the desktop's preferences are all derived from these fields."""

    backend: str = setting("embedded", "index backend", choices=BACKENDS)
    data_dir: str = setting(None, "folder of the embedded index (default: the user data folder)",
                            factory=lambda: platformdirs.user_data_dir(APP_NAME, appauthor=False))
    weights: str = setting("imagenet", "'imagenet', a VGG16 .h5 file, or 'random' (tests only)")
    descriptor: str | None = setting(None, "descriptor of a new index (gem when unset; an index keeps its own)",
                                     choices=DESCRIPTORS)
    batch_size: int = setting(16, "images per VGG16 batch")
    runtime: str = setting("auto", "run VGG16 on this runtime (auto: the fastest verified path here; cuda: an "
                           "NVIDIA GPU through ONNX Runtime)", choices=RUNTIMES)
    precision: str = setting("auto", "arithmetic of VGG16 (auto: the fastest that agrees with fp32 on this machine)",
                             choices=PRECISIONS)
    labels: bool = setting(False, "name what is in each picture with VGG16's own ImageNet classifier (searchable "
                           "labels, shown apart from tags); needs the full 528 MB ImageNet weights file instead of "
                           "the 58 MB one; costs about 0.8 GB more memory and under one percent more forward time per "
                           "image (bench/labels.py: +813 MB, +0.3 percent, ONNX Runtime fp32)")
    es_url: str = setting("http://127.0.0.1:9200", "Elasticsearch URL")
    es_index: str = setting("image-search", "Elasticsearch index alias")
    es_api_key: str | None = setting(None, "Elasticsearch API key", secret=True)
    es_username: str | None = setting(None, "Elasticsearch user name")
    es_password: str | None = setting(None, "Elasticsearch password", secret=True)
    es_ca_certs: str | None = setting(None, "CA certificate file for an https Elasticsearch")
    es_timeout_s: float = setting(5.0, "seconds to wait for Elasticsearch before a clear error", flag=False)
    api_host: str = setting("127.0.0.1", "address the HTTP API binds", flag=False)
    api_port: int = setting(5000, "port of the HTTP API", flag=False)
    api_token: str | None = setting(None, "bearer token required by /api (needed beyond loopback)", flag=False,
                                    secret=True)
    api_token_file: str | None = setting(None, "file holding api_token (e.g. a Docker secret); api_token wins",
                                         flag=False)
    api_cors_origins: str | None = setting(None, "comma-separated origins allowed by CORS (off when empty)",
                                           flag=False)
    max_upload_mb: float = setting(20.0, "largest accepted upload, MB", flag=False)
    exclude: str = setting(DEFAULT_EXCLUDE, "comma-separated glob patterns of file and folder names the scan "
                           "ignores (a pattern with '/' matches the whole path); replaces the default list")
    follow_external_symlinks: bool = setting(False, "follow symlinks that lead out of every indexed folder (off, as "
                                             "in digiKam and rclip: a link to / would pull in the whole disk)")
    reference_folders: str = setting("", "comma-separated folders whose images are kept first by duplicates and never "
                                     "trashed or moved (the CLI has its own repeatable --reference)", flag=False)
    keeper_rules: str = setting(DEFAULT_KEEPER_RULES, "comma-separated rules choosing the copy of a duplicate group "
                                "to keep, first rule first: reference, resolution, size, oldest")

    def exclude_patterns(self) -> tuple[str, ...]:
        """The `exclude` setting as a tuple of glob patterns (empty entries dropped)."""
        return tuple(p.strip() for p in self.exclude.split(",") if p.strip())

    def reference_folder_list(self) -> tuple[str, ...]:
        """The `reference_folders` setting as a tuple of absolute folders (`~` expanded; empty entries dropped)."""
        return tuple(os.path.abspath(os.path.expanduser(p.strip())) for p in self.reference_folders.split(",")
                     if p.strip())

    def keeper_rule_list(self) -> tuple[str, ...]:
        """The `keeper_rules` setting as a tuple of rule names (keys of core.duplicates.RULE_REASONS)."""
        return tuple(r.strip() for r in self.keeper_rules.split(",") if r.strip())

    def replace(self, **changes) -> Settings:
        """A copy with `changes` (field name: value), not validated again."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> Settings:
        """Self, when the backend, descriptor, precision, runtime, batch_size and keeper_rules are valid;
        else ConfigError naming the bad value and the choices."""
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.descriptor is not None and self.descriptor not in DESCRIPTORS:
            raise ConfigError(f"unknown descriptor {self.descriptor!r}; choose one of {', '.join(DESCRIPTORS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime {self.runtime!r}; choose one of {', '.join(RUNTIMES)}")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        rules = self.keeper_rule_list()
        unknown = [r for r in rules if r not in KEEPER_RULES]
        if unknown or not rules:
            said = f"unknown keeper rule {unknown[0]!r}" if unknown else "no keeper rule"
            raise ConfigError(f"{said} in keeper_rules; use some of {', '.join(KEEPER_RULES)}, comma-separated")
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


def setting_fields() -> tuple[dataclasses.Field, ...]:
    """Every Settings field, in order; `field.metadata` holds help, flag, choices and secret."""
    return dataclasses.fields(Settings)


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a `--name-with-dashes` option for every setting with a flag, plus `--config`. Unset options
    stay absent from the namespace (argparse.SUPPRESS), so lower layers (env, file) show through."""
    group = parser.add_argument_group("index and model (also IMAGE_SEARCH_<NAME> environment variables)")
    for f in setting_fields():
        if not f.metadata["flag"]:
            continue
        kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = f" (default: {default})" if default is not None and not f.metadata["secret"] else ""
        group.add_argument(f"--{f.name.replace('_', '-')}", type=kind, choices=f.metadata["choices"],
                           default=argparse.SUPPRESS, help=f.metadata["help"] + shown)
    group.add_argument("--config", default=argparse.SUPPRESS, help="TOML config file (default: the user config folder)")


def flagged_settings(args: argparse.Namespace) -> dict:
    """The settings given as flags in `args` (parsed with add_setting_arguments)."""
    return {f.name: getattr(args, f.name) for f in setting_fields() if hasattr(args, f.name)}


def settings_from_arguments(args: argparse.Namespace, **overrides) -> Settings:
    """Settings.load with the flags in `args` (and `overrides`, None = unset) on top."""
    return Settings.load({**flagged_settings(args), **overrides}, config_file=getattr(args, "config", None))


def cache_dir() -> Path:
    """Where caches live (thumbnails, int8 graphs, the runtime choice): IMAGE_SEARCH_CACHE_DIR, or the user
    cache folder. Anything in it can be deleted; it is made again when needed."""
    return Path(os.environ.get("IMAGE_SEARCH_CACHE_DIR") or platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def default_config_file() -> Path:
    """config.toml in the user config folder (platformdirs), read when IMAGE_SEARCH_CONFIG and --config are unset."""
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
