"""The cell-generator artifact on disk: safetensors weights plus one JSON manifest.

Layout of an artifact folder::

    artifact.json              format name and version, package version, space and op
                               vocabulary, model configs, proxies, ZC transform (log-scaling and
                               normaliser), clusters (GMM arrays, sizes, measured mean ZC),
                               held-out hashes, data counts, training metrics, timings, and the
                               sha256 of each weights file
    weights/gvae.safetensors   G-VAE state dict
    weights/ccnf.safetensors   CCNF state dict

Nothing is pickled: weights load with safetensors, everything else is JSON. `artifact.json` is
written last (atomically), so a folder that has it is complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hgnas_ray import __version__
from hgnas_ray.corpus.shards import file_sha256, read_json, write_json_atomic
from hgnas_ray.errors import DataError
from hgnas_ray.generator.cells.errors import ArtifactError

FORMAT_NAME = "hgnas-cell-generator"
FORMAT_VERSION = 3  # 2: LayerNorm after each graph conv; 3: node embedding, residual convs
ARTIFACT_FILE = "artifact.json"
WEIGHT_FILES = {"gvae": "weights/gvae.safetensors", "ccnf": "weights/ccnf.safetensors"}
REQUIRED_KEYS = ("space", "vocabulary", "gvae_config", "ccnf_config", "proxies", "zc_transform",
                 "clusters", "weights")


def write_artifact(out_dir: str | Path, manifest: dict[str, Any],
                   weights: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write the weights, then `artifact.json` (manifest + format header + weight digests)."""
    out_dir = Path(out_dir)
    (out_dir / ARTIFACT_FILE).unlink(missing_ok=True)  # no old manifest over new weights
    entries = {}
    for name, relative in WEIGHT_FILES.items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tensors = {k: v.detach().cpu().contiguous() for k, v in weights[name].items()}
        try:
            save_file(tensors, str(tmp), metadata={"format": FORMAT_NAME,
                                                   "format_version": str(FORMAT_VERSION)})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        entries[name] = {"file": relative, "sha256": file_sha256(path), "tensors": len(tensors)}
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "package_version": __version__}
    write_json_atomic({**header, **manifest, "weights": entries}, out_dir / ARTIFACT_FILE)
    return out_dir


def read_artifact(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """The manifest and the weights of an artifact; `ArtifactError` says what is wrong."""
    path = Path(path)
    manifest = _read_manifest(path)
    weights = {}
    for name in WEIGHT_FILES:
        weights[name] = _read_weights(path, name, manifest["weights"].get(name))
    return manifest, weights


def _read_manifest(path: Path) -> dict[str, Any]:
    hint = "write one with `hgnas pretrain cells --corpus DIR --out DIR`"
    if not path.is_dir():
        raise ArtifactError(f"cell-generator artifact {str(path)!r} is not a folder; {hint}")
    if not (path / ARTIFACT_FILE).is_file():
        raise ArtifactError(f"{path} has no {ARTIFACT_FILE}: not a (complete) cell-generator "
                            f"artifact; {hint}")
    try:
        manifest = read_json(path / ARTIFACT_FILE, "artifact manifest")
    except DataError as err:
        raise ArtifactError(str(err)) from None
    if manifest.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{path / ARTIFACT_FILE} is not a cell-generator artifact (format "
                            f"{manifest.get('format')!r}, expected {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"artifact {path} has format version {version!r} (written by hgnas-ray "
            f"{manifest.get('package_version', '?')}); this hgnas-ray {__version__} reads format "
            f"version {FORMAT_VERSION} only: re-run `hgnas pretrain cells` with this version, or "
            f"load it with the hgnas-ray that wrote it")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ArtifactError(f"{path / ARTIFACT_FILE} lacks {missing}; the artifact is corrupt: "
                            "write it again with `hgnas pretrain cells`")
    return manifest


def _read_weights(path: Path, name: str, entry: dict[str, Any] | None
                  ) -> dict[str, torch.Tensor]:
    relative = (entry or {}).get("file", WEIGHT_FILES[name])
    file = path / relative
    if not file.is_file():
        raise ArtifactError(f"artifact {path} lacks its {name} weights {relative}; copy the "
                            "whole artifact folder, or write it again with `hgnas pretrain cells`")
    if entry is not None and entry.get("sha256") != file_sha256(file):
        raise ArtifactError(f"{file} differs from the file the artifact was written with "
                            "(sha256 mismatch): it was changed or truncated; write the artifact "
                            "again")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as err:
        raise ArtifactError(f"{file} is not a readable safetensors file: {err}") from None
