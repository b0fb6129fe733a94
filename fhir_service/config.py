"""Settings, read from FHIR_* environment variables; the CLI overrides them with flags."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get("FHIR_" + name, default)


def default_package_cache() -> Path:
    """The standard FHIR package cache (~/.fhir/packages), shared with other FHIR tools."""
    return Path(_env("PACKAGE_CACHE", str(Path.home() / ".fhir" / "packages")))


def page_limits() -> tuple[int, int]:
    """(default, maximum) search page size. Read on their own, cheaply: every search asks."""
    return int(_env("DEFAULT_PAGE_SIZE", "20")), int(_env("MAX_PAGE_SIZE", "1000"))


@dataclass
class Settings:
    database: str = field(default_factory=lambda: _env("DATABASE", "sqlite:///" + str(PROJECT_ROOT / "data" / "fhir.db")))
    host: str = field(default_factory=lambda: _env("HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(_env("PORT", "8080")))
    workers: int = field(default_factory=lambda: int(_env("WORKERS", "1")))
    base_path: str = "/fhir"
    # Public base URL used in Location headers and Bundle links; derived from the request when empty.
    base_url: str = field(default_factory=lambda: _env("BASE_URL", ""))
    package_cache: Path = field(default_factory=default_package_cache)
    profiles_dir: Path = field(default_factory=lambda: Path(_env("PROFILES_DIR", str(PROJECT_ROOT / "profiles"))))
    max_body_bytes: int = field(default_factory=lambda: int(_env("MAX_BODY_BYTES", str(16 * 1024 * 1024))))
    max_json_depth: int = field(default_factory=lambda: int(_env("MAX_JSON_DEPTH", "64")))
    default_page_size: int = field(default_factory=lambda: page_limits()[0])
    max_page_size: int = field(default_factory=lambda: page_limits()[1])
    # What a write naming an unknown profile in meta.profile gets: "warning" or "error".
    unknown_profile: str = field(default_factory=lambda: _env("UNKNOWN_PROFILE", "warning"))
    # Whether writes are validated at all (always on in production; a switch for bulk loads).
    validate_writes: bool = field(default_factory=lambda: _env("VALIDATE_WRITES", "1") not in ("0", "false", "no"))
