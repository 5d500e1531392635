"""``tilerunner demo``: the zoo detector over a large sample scene, no data of your own needed."""

from __future__ import annotations

from pathlib import Path

import click

from tilerunner.cli.common import command_settings, handle_errors
from tilerunner.cli.run import run

__all__ = ["demo"]


@click.command()
@click.option(
    "--out",
    "out_dir",
    default="tilerunner-demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the scene, the detections, the preview and the state.",
)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
@handle_errors
def demo(ctx: click.Context, out_dir: Path, workers: int, quiet: bool) -> None:
    """Detect people and buses with YOLOv3-tiny (COCO) in a 6144 x 4096 georeferenced scene.

    The scene is a seeded mosaic of the two street photos shipped in the ``ultralytics`` wheel
    (fetched once with pip, checked by sha256); many objects straddle tile and region seams.
    Writes ``scene.tif``, ``detections.geojson`` and ``preview.png`` into ``--out``.
    """
    from tilerunner.demo import build_demo_scene
    from tilerunner.models.zoo import fetch_demo_photos

    settings = command_settings(ctx)
    out_dir.mkdir(parents=True, exist_ok=True)
    scene = out_dir / "scene.tif"
    if not scene.exists():
        photos = fetch_demo_photos(settings.cache_dir)
        click.echo(f"building the demo scene {scene} ...", err=True)
        build_demo_scene(scene, [photos["bus.jpg"], photos["zidane.jpg"]])
    ctx.invoke(
        run,
        sources=(str(scene),),
        model_args=("zoo:yolov3-tiny-coco",),
        outputs=(str(out_dir / "detections.geojson"),),
        tile_size=512,
        overlap=192,
        region_size=2048,
        min_score=0.3,
        workers=workers,
        state_path=out_dir / "state.db",
        preview=out_dir / "preview.png",
        quiet=quiet,
    )
    click.echo(f"wrote {out_dir / 'detections.geojson'} and {out_dir / 'preview.png'}", err=True)
