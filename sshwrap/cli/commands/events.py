"""Commands that follow and steer the engine: events, reload."""

from __future__ import annotations

import sys

from sshwrap.cli.base import JsonOpt, NamesArg, app
from sshwrap.errors import ExitCode


@app.command()
def events(names: NamesArg = None, as_json: JsonOpt = False) -> int:
    """Follow every state change of the tunnels (all, or NAME...) as it happens, one line
    each, until Ctrl-C (exit 0, as 'logs -f').

    An engine is started when none runs, so tunnels started later are followed from their
    first state; when it exits (down --all), the next one is waited for.

    Examples:  sshwrap events  |  sshwrap events db --json
    """
    from sshwrap.cli.render.events import event_line
    from sshwrap.runtime.engine.eventstream import follow
    from sshwrap.runtime.system.paths import StatePaths
    from sshwrap.runtime.system.state import recorded_names
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.selection import check_known

    if names:  # a mistyped name fails at once; it would wait for ever
        check_known(names, ProfileStore.from_option(None).paths(),
                    recorded_names(StatePaths.from_env()))

    def waiting() -> None:
        if not as_json:
            sys.stderr.write("sshwrap: no engine runs; waiting for one (sshwrap up)\n")
            sys.stderr.flush()

    try:
        for event in follow(names=names or (), on_wait=waiting):
            sys.stdout.write(event_line(event, as_json=as_json))
            sys.stdout.flush()
    except KeyboardInterrupt:
        return ExitCode.OK
    return ExitCode.OK


@app.command()
def reload(as_json: JsonOpt = False) -> int:
    """Apply edited profiles to the running tunnels (as SIGHUP to the engine does): only
    those whose client changed are restarted, those whose profile was deleted are stopped,
    and a profile that became invalid is not applied (exit 2, its error shown).

    Examples:  sshwrap reload  |  sshwrap reload --json
    """
    from sshwrap.cli.render import emit
    from sshwrap.cli.render import events as _render  # noqa: F401 - registers the report
    from sshwrap.runtime.engine.reload import reload as run_reload

    report = run_reload()
    emit(report, as_json=as_json)
    return int(report.exit_code)
