"""Photo collections: whole photos many to a work item, and pipelines of stages over crops.

Sources (:mod:`~tilerunner.photos.sources`), fitting and cropping
(:mod:`~tilerunner.photos.pixels`), the work item kinds (:mod:`~tilerunner.photos.items`),
planning and describing them (:mod:`~tilerunner.photos.plan`), the worker's side
(:mod:`~tilerunner.photos.worker`) and results grouped per photo
(:mod:`~tilerunner.photos.results`). Import the modules you need: this package root imports
nothing, so the work item kinds load without imagery or model libraries.
"""
