"""The demo scene: real photos composed into a large georeferenced raster."""

from tilerunner.demo.scene import DemoScene, build_demo_scene

__all__ = ["DemoScene", "build_demo_scene"]
