"""``edgefc gateway install-service``: a systemd unit that keeps the gateway running on a real machine.

The unit restarts the gateway whatever ends it, keeps its state under ``/var/lib/edgefc`` (systemd's
``StateDirectory``), sends its output to the journal, and delegates the cgroup subtree to it so that it may
make per-instance memory cgroups under cgroup v2. It runs the gateway with the Python interpreter running this
command, so the unit follows the virtual environment edgefc was installed into.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from edgefc.cli.client import EXIT_BAD_INPUT, CliExit

DEFAULT_DATA_DIR = Path("/var/lib/edgefc")
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")


def unit_text(*, python: str, data_dir: Path, config: Path | None, listen: str | None) -> str:
    """The unit file's text. ``data_dir`` under /var/lib is created by systemd (StateDirectory, mode 0700)."""
    args = [python, "-m", "edgefc.cli", "gateway", "run", "--data-dir", str(data_dir)]
    if config is not None:
        args += ["--config", str(config)]
    if listen is not None:
        args += ["--listen", listen]
    state = ""
    if data_dir.parent == Path("/var/lib") and data_dir.name:
        state = f"StateDirectory={data_dir.name}\nStateDirectoryMode=0700\n"
    return f"""[Unit]
Description=edgefc gateway: serverless functions on this edge gateway
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={shlex.join(args)}
{state}WorkingDirectory={data_dir}
Environment=PYTHONUNBUFFERED=1
# The gateway stops its instances and containers itself on SIGTERM; what is left after the timeout is killed.
KillMode=mixed
TimeoutStopSec=45
Restart=always
RestartSec=2
# Per-instance memory cgroups (cgroup v2) are made inside the service's own subtree.
Delegate=yes
LimitNOFILE=65536
StandardOutput=journal
StandardError=journal
SyslogIdentifier=edgefc

[Install]
WantedBy=multi-user.target
"""


@click.command("install-service")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_UNIT_DIR,
              show_default=True, help="where to write the unit")  # fmt: skip
@click.option("--name", default="edgefc", show_default=True, help="the unit is NAME.service")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR,
              show_default=True, help="the gateway's data dir (kept across upgrades)")  # fmt: skip
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), help="a gateway.yaml to start with")
@click.option("--listen", help="API address host:port (default 127.0.0.1:9999)")
@click.option("--stdout", "to_stdout", is_flag=True, help="print the unit instead of writing it")
def install_service(unit_dir: Path, name: str, data_dir: Path, config: Path | None, listen: str | None,
                    to_stdout: bool) -> None:  # fmt: skip
    """Write a systemd unit that runs this gateway as a service: restarted always, state in /var/lib/edgefc,
    logs in the journal (journalctl -u edgefc).
    """
    if not data_dir.is_absolute() or (config is not None and not config.is_absolute()):
        raise CliExit("--data-dir and --config must be absolute paths (a service has no current folder)",
                      EXIT_BAD_INPUT)  # fmt: skip
    text = unit_text(python=sys.executable, data_dir=data_dir, config=config, listen=listen)
    if to_stdout:
        click.echo(text, nl=False)
        return
    path = unit_dir / f"{name}.service"
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise CliExit(f"cannot write {path}: {exc.strerror} (as root: sudo edgefc gateway install-service)",
                      EXIT_BAD_INPUT) from exc  # fmt: skip
    click.echo(f"wrote {path}\nnext: systemctl daemon-reload && systemctl enable --now {name}\n"
               f"      journalctl -u {name} -f     # its log")  # fmt: skip
