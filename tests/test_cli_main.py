"""The `geoseg` command group (geoseg.cli): commands from entry points, the
train extra's commands when it is missing, no TensorFlow on import or --help."""

import subprocess
import sys


def test_help_and_import_never_load_tensorflow():
    code = ("import sys, geoseg, geoseg.cli, geoseg.pipeline, geoseg.batch; "
            "from click.testing import CliRunner; CliRunner().invoke(geoseg.cli.main, ['--help']); "
            "CliRunner().invoke(geoseg.cli.main, ['classify', '--help']); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_without_train_extra_message():
    import click
    from click.testing import CliRunner

    from geoseg.cli import register_commands

    @click.group()
    def g():
        pass

    register_commands(g, installed=False)
    for cmd in ("train", "export", "evaluate"):
        r = CliRunner().invoke(g, [cmd, "DATA", "-o", "x"])
        assert r.exit_code == 1 and "needs the train extra: pip install 'geoseg[train]'" in r.output
