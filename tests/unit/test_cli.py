import subprocess
import sys

from purelb import cli


def test_help_lists_available_subcommands(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert "bench" in out


def test_module_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "purelb", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: purelb" in proc.stdout
