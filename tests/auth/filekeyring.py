"""A keyring backend in one JSON file, for tests: chosen with PYTHON_KEYRING_BACKEND."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

#: Where the entries are kept: under XDG_DATA_HOME, as file keyrings keep them; the engine is
#: started with that variable (runtime/system/detach.py ENGINE_ENVIRONMENT) and no test-only one.
DATA_ENV = "XDG_DATA_HOME"
FILE_NAME = "sshwrap-test-keyring.json"
BACKEND = "tests.auth.filekeyring.FileKeyring"


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    @staticmethod
    def _path() -> Path:
        return Path(os.environ[DATA_ENV]) / FILE_NAME

    def _load(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads(self._path().read_text())
        except FileNotFoundError:
            return {}
        return data

    def _save(self, data: dict[str, str]) -> None:
        self._path().write_text(json.dumps(data))
        self._path().chmod(0o600)

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}/{username}"] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}/{username}", None) is None:
            raise PasswordDeleteError(username)
        self._save(data)
