"""Passwords kept in the system keyring through the optional keyring package (sshwrap[keyring])."""

from __future__ import annotations

from types import ModuleType

from sshwrap.errors import AuthFailed, InvalidInput, MissingBinary, Problem
from sshwrap.textsafe import shown

#: The keyring service of every entry; the entry's user name is the profile's name.
SERVICE = "sshwrap"
INSTALL_HINT = "install it with: pip install 'sshwrap[keyring]'"


def _keyring() -> ModuleType:
    # Imported on use only: the package is optional and costs start-up for everyone else.
    try:
        import keyring
    except ImportError:
        raise MissingBinary("password_keyring needs the Python package 'keyring', which is not "
                            "installed", hint=INSTALL_HINT) from None
    return keyring


def _backend_failed(error: Exception, what: str) -> AuthFailed | MissingBinary:
    # The backend's message names the backend and the reason, never the secret.
    from keyring.errors import NoKeyringError

    if isinstance(error, NoKeyringError):
        return MissingBinary(f"no system keyring is available to {what}",
                             hint="run a Secret Service (GNOME Keyring, KWallet, KeePassXC) or "
                                  "set PYTHON_KEYRING_BACKEND")
    return AuthFailed(f"the keyring could not {what}: {shown(str(error))}")


def keyring_password(name: str, source: str) -> str:
    """The password stored for profile ``name``; bad input (exit 2) when there is none, so that
    nothing is started without it."""
    keyring = _keyring()
    try:
        secret: str | None = keyring.get_password(SERVICE, name)
    except keyring.errors.KeyringError as error:
        raise _backend_failed(error, f"read the password of {name}") from None
    if not secret:
        raise InvalidInput(
            Problem(f"password_keyring = true but the keyring holds no password for {name}",
                    key="password_keyring", file=source),
            hint=f"store it with 'sshwrap password set {name}'")
    return secret


def store_password(name: str, secret: str) -> None:
    keyring = _keyring()
    try:
        keyring.set_password(SERVICE, name, secret)
    except keyring.errors.KeyringError as error:
        raise _backend_failed(error, f"store the password of {name}") from None


def delete_password(name: str) -> bool:
    """Remove the entry of ``name``; False when there was none."""
    keyring = _keyring()
    try:
        if keyring.get_password(SERVICE, name) is None:
            return False
        keyring.delete_password(SERVICE, name)
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as error:
        raise _backend_failed(error, f"delete the password of {name}") from None
    return True
