"""Where things are: the one settings object, read from the environment when a command starts."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PROJECT_CONF = Path(__file__).resolve().parent.parent / "conf"


class Settings(BaseSettings):
    """Paths and endpoints. Built by the CLI at start-up, never at import time."""

    model_config = SettingsConfigDict(env_prefix="CADENCE_", extra="ignore")

    home: Path = Path(".cadence")
    conf: Path = _PROJECT_CONF
    # "sqlite" (a file in the workspace) or redis://host:port[/db]
    online_store: str = "sqlite"
    # Any MLflow tracking server; unset: a SQLite database in the workspace's mlflow/.
    mlflow_tracking_uri: str | None = Field(default=None, validation_alias="MLFLOW_TRACKING_URI")

    @field_validator("home")
    @classmethod
    def _home_is_not_a_file(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"CADENCE_HOME={value} exists and is not a folder")
        return value

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("online_store")
    @classmethod
    def _known_online_store(cls, value: str) -> str:
        if value != "sqlite" and not value.startswith("redis://"):
            raise ValueError(
                f"CADENCE_ONLINE_STORE={value}: expected 'sqlite' or redis://host:port[/db]"
            )
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

    @property
    def lists_dir(self) -> Path:
        return self.home / "lists"
