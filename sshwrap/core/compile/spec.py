"""What the runtime adds to a profile's client command, as values: the launch spec."""

from __future__ import annotations

from dataclasses import dataclass

from sshwrap.core.model import AuthMethod, Profile


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a start adds to the profile's own command, found beforehand by the runtime
    (paths written, keys fetched): the compilers (ssh.py, plink.py) build the whole argv
    from the profile and this, in one pass. Without one they compile what
    ``sshwrap compile`` shows.
    """

    #: ssh: ``-E FILE``, its messages in the tunnel's log (plink writes them to its stderr).
    log_path: str | None = None
    #: ``-v``: bind and remote-forward results are visible in the log.
    verbose: bool = True
    #: sshwrap answers the password or passphrase prompt (askpass, plink's password file):
    #: one prompt per hop. Otherwise ssh runs in batch mode: a prompt fails, never hangs.
    answers_prompts: bool = False
    #: sshwrap also relays the server's questions (keyboard-interactive: a one-time code)
    #: to a person: keyboard-interactive stays on for key profiles, one attempt per hop.
    answers_questions: bool = False
    #: ssh: the known_hosts file holding only the pinned key of the tunnel host.
    pinned_known_hosts: str | None = None
    #: ssh: the per-tunnel client config (``-F``) that carries sshwrap's options to every
    #: hop and includes the profile's config file or the user's and the system's.
    client_config: str | None = None
    #: ssh: the control socket of a shared connection's master (``-M -S``).
    control_path: str | None = None
    #: ssh: a time limit for each connection (a check's login).
    connect_timeout: int | None = None
    #: A login that runs this remote command instead of holding forwards (``-N``).
    command: tuple[str, ...] = ()
    #: plink: where it reads the password (``-pwfile``, a pipe).
    password_file: str | None = None
    #: plink: the ``SHA256:`` fingerprints each jump host's plink accepts, hop by hop.
    hop_host_keys: tuple[tuple[str, ...], ...] = ()


def prompt_options(profile: Profile, *, questions: bool = False) -> list[tuple[str, str]]:
    """ssh options used instead of BatchMode when sshwrap answers the prompts itself; with
    ``questions``, the server's keyboard-interactive questions go to a person (one attempt:
    NumberOfPasswordPrompts counts them too)."""
    options = [("NumberOfPasswordPrompts", "1")]
    if profile.auth is AuthMethod.PASSWORD:
        options.append(("PasswordAuthentication", "yes"))
        if questions:  # a second factor after the password (a config may have turned it off)
            options.append(("KbdInteractiveAuthentication", "yes"))
    else:
        # A passphrase must never be sent to a server as a password; a server's question is
        # never answered with it (runtime/client/auth.py classify_prompt), only by a person.
        options += [("PasswordAuthentication", "no"),
                    ("KbdInteractiveAuthentication", "yes" if questions else "no")]
    return options


def launch_options(profile: Profile, spec: LaunchSpec) -> list[tuple[str, str]]:
    """The ssh options a start adds, right after sshwrap's own (ssh keeps the first value it
    sees, so the profile cannot override a pinned known_hosts file or one password prompt).
    A pinned key binds the tunnel host only: its jump hosts are checked against the user's
    known_hosts (their options come from the client config)."""
    options: list[tuple[str, str]] = []
    if spec.pinned_known_hosts is not None:
        options += [("UserKnownHostsFile", spec.pinned_known_hosts),
                    ("GlobalKnownHostsFile", "/dev/null"), ("UpdateHostKeys", "no")]
    options += prompt_options(profile, questions=spec.answers_questions) \
        if spec.answers_prompts else [("BatchMode", "yes")]
    if spec.connect_timeout is not None:
        options.append(("ConnectTimeout", str(spec.connect_timeout)))
    if spec.control_path is not None:
        options.append(("ControlPersist", "no"))
    return options
