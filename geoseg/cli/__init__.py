"""The ``geoseg`` command line (click).

Every command, the built-in ones included, is registered through the
``geoseg.commands`` entry-point group (as ``rio`` registers its commands and
plugins), so `geoseg.training`, `geoseg.export` and third-party packages add
commands the same way.  A command module imports its heavy modules inside the
command body, so ``geoseg --help`` is instant and never imports TensorFlow.
A command that declares ``requires_extra = "train"`` is replaced, where that
extra is not installed, by a stub that says what to install.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import click

from .. import __version__
from ..errors import GeosegError
from .options import fail, train_extra_installed

ENTRY_POINT_GROUP = "geoseg.commands"
# built-in commands newer than some editable installs' entry points (pyproject.toml lists them too)
_BUILTIN_COMMANDS = {"models": "geoseg.cli.models:models"}


class _Group(click.Group):
    """Loads the entry-point commands on first use."""

    _loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        register_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geoseg")
def main() -> None:
    """Classify satellite scenes patch by patch into landscape classes.

    \b
    geoseg classify SCENE.tif -o out/          classify with the default model
    geoseg info MODEL.onnx                     print a model's contract
    geoseg models                              the built-in models (-m default, -m multispectral)
    geoseg evaluate-scene CLASSES.tif --reference REF -o DIR
                                               score a class map against a reference
    geoseg reference ndwi SCENE.tif ...        a water reference from the scene itself
    geoseg chips SCENE.tif --labels L -o DIR   training chips from scenes and labels
    geoseg serve SCENES/                       the web map (needs the `serve` extra)
    geoseg prepare / train / evaluate / export (need the `train` extra)
    """


def register_commands(group: click.Group, installed: bool | None = None) -> None:
    """Add every command of the ``geoseg.commands`` entry points to ``group``.

    ``installed`` says whether the ``train`` extra is importable (default:
    checked); commands that need a missing extra become stubs that say so.
    """
    if installed is None:
        installed = train_extra_installed()
    eps = list(entry_points(group=ENTRY_POINT_GROUP))
    for name, target in _BUILTIN_COMMANDS.items():  # an install made before the command's entry point was added
        if not any(ep.name == name for ep in eps):
            eps.append(EntryPoint(name, target, ENTRY_POINT_GROUP))
    for ep in sorted(eps, key=lambda e: e.name):
        if ep.name in group.commands:
            continue
        try:
            cmd = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            group.add_command(_broken(ep.name, exc))
            continue
        if getattr(cmd, "requires_extra", None) == "train" and not installed:
            cmd = _missing(ep.name, "train")
        group.add_command(cmd, ep.name)


def _missing(name: str, extra: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   short_help=f"(needs the {extra} extra)", add_help_option=False)
    def cmd() -> None:
        fail(GeosegError(f"`geoseg {name}` needs the {extra} extra: pip install 'geoseg[{extra}]'"))

    return cmd


def _broken(name: str, exc: BaseException) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   short_help="(could not be loaded)", add_help_option=False)
    def cmd() -> None:
        fail(GeosegError(f"`geoseg {name}` could not be loaded ({type(exc).__name__}: {exc}); reinstall geoseg"))

    return cmd


__all__ = ["main", "register_commands", "ENTRY_POINT_GROUP"]
