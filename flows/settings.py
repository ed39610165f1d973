"""Where things are: the one settings object, read from the environment when a command starts."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cadence.flows.conf import Conf, default_folder


class Settings(BaseSettings):
    """Paths and endpoints. Built by the CLI at start-up, never at import time."""

    model_config = SettingsConfigDict(env_prefix="CADENCE_", extra="ignore")

    home: Path = Path(".cadence")
    # The decisions' folder (conf/*.yaml); unset: the defaults shipped in the package.
    conf: Path = Field(default_factory=default_folder)
    # "sqlite" (a file in the workspace) or redis://host:port[/db]
    online_store: str = "sqlite"
    # The merge service's database: postgresql://... in production; unset: a SQLite file in
    # the workspace (serving.db, WAL mode).
    database_url: str | None = None
    # Set by `cadence serve --workers N --today ...` for its worker processes.
    serve_today: str | None = None
    # Any MLflow tracking server; unset: a SQLite database in the workspace's mlflow/.
    mlflow_tracking_uri: str | None = Field(default=None, validation_alias="MLFLOW_TRACKING_URI")

    @field_validator("home")
    @classmethod
    def _home_is_not_a_file(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"CADENCE_HOME={value} exists and is not a folder")
        return value

    @field_validator("conf")
    @classmethod
    def _conf_is_a_folder(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"CADENCE_CONF={value} is not a folder")
        return value

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(
                f"CADENCE_DATABASE_URL={value}: expected postgresql://user@host:port/db "
                "or sqlite:///path"
            )
        return value

    @property
    def serving_database(self) -> str:
        """The service database's SQLAlchemy URL (PostgreSQL through psycopg 3)."""
        if self.database_url is None:
            return f"sqlite:///{(self.home / 'serving.db').resolve()}"
        if self.database_url.startswith("postgresql://"):
            return "postgresql+psycopg://" + self.database_url.removeprefix("postgresql://")
        return self.database_url

    @field_validator("online_store")
    @classmethod
    def _known_online_store(cls, value: str) -> str:
        if value != "sqlite" and not value.startswith("redis://"):
            raise ValueError(
                f"CADENCE_ONLINE_STORE={value}: expected 'sqlite' or redis://host:port[/db]"
            )
        return value

    _decisions: Conf | None = PrivateAttr(default=None)

    def decisions(self) -> Conf:
        """The YAML decisions in `conf` (one object per settings, each file read once)."""
        if self._decisions is None:
            self._decisions = Conf(self.conf)
        return self._decisions

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

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def log_file(self) -> Path:
        return self.home / "cadence.log"
