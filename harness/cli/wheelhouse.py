"""``flashcore wheelhouse``: the optional peer backends' wheels for an offline GPU node (harness.tools.wheelhouse)."""
from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.errors import fail
from harness.tools.wheelhouse import ASSUMED_PRESENT, BACKEND_PACKAGES, Request, WheelhouseError, make


def wheelhouse(
    out: Path = typer.Option(..., "--out", help="folder for the wheels and install.sh"),
    python: str = typer.Option("3.12", "--python", help="target CPython version, MAJOR.MINOR"),
    platform: str = typer.Option("manylinux_2_28_x86_64", "--platform",
                                               help="target wheel platform tag"),
    backends: str = typer.Option(",".join(BACKEND_PACKAGES), "--backends",
                                               help=f"comma-separated: {', '.join(BACKEND_PACKAGES)}"),
    split_mb: float | None = typer.Option(None, "--split-mb",
                                                        help="cut wheels larger than N MiB into N MiB parts"),
    deps: bool = typer.Option(False, "--deps", help="download dependencies too (default: "
                                            "the node has torch and " + ", ".join(ASSUMED_PRESENT[1:]) + ")"),
) -> None:
    """Download the optional peer backends' wheels for an offline GPU node, with an install script."""
    req = Request(python=python, platform=platform, out=out,
                  backends=tuple(b.strip() for b in backends.split(",") if b.strip()), split_mb=split_mb, deps=deps)
    try:
        manifest = make(req, log=typer.echo)
    except WheelhouseError as exc:
        raise fail(f"wheelhouse: {exc}") from None
    n_parts = sum(len(f["parts"]) for f in manifest["files"])
    typer.echo(f"{len(manifest['files'])} wheels in {out}" + (f" ({n_parts} parts)" if n_parts else "")
               + f"; on the node: bash {out / 'install.sh'} [--target DIR]")


def register(app: typer.Typer) -> None:
    app.command()(wheelhouse)
