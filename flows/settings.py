"""Where things are: the one settings object, read from the environment when a command starts."""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PROJECT_CONF = Path(__file__).resolve().parent.parent / "conf"


class Settings(BaseSettings):
    """Paths and endpoints. Built by the CLI at start-up, never at import time."""

    model_config = SettingsConfigDict(env_prefix="CADENCE_", extra="ignore")

    home: Path = Path(".cadence")
    conf: Path = _PROJECT_CONF

    @field_validator("home")
    @classmethod
    def _home_is_not_a_file(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"CADENCE_HOME={value} exists and is not a folder")
        return value

    @property
    def raw_dir(self) -> Path:
        return self.home / "raw"

    @property
    def truth_dir(self) -> Path:
        return self.home / "truth"

    @property
    def features_dir(self) -> Path:
        return self.home / "features"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"
