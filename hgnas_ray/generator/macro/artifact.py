"""The macro-generator artifact on disk: safetensors weights plus one JSON manifest.

Layout of an artifact folder::

    artifact.json                format name and version, package version, vocabulary, model
                                 config, the cell artifact it was trained with (folder and the
                                 sha256 of its artifact.json), data counts, training history,
                                 timings, the fingerprint of its inputs, the weights' sha256
    weights/seqgen.safetensors   the transformer's state dict

Nothing is pickled. `artifact.json` is written last (atomically), so a folder that has it is
complete. A macro generator is tied to one cell artifact: its cluster tokens name that artifact's
clusters, so loading with another cell artifact is refused.
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
from hgnas_ray.generator.cells.artifact import ARTIFACT_FILE
from hgnas_ray.generator.cells.errors import ArtifactError

FORMAT_NAME = "hgnas-macro-generator"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights/seqgen.safetensors"
REQUIRED_KEYS = ("vocabulary", "model_config", "cell_artifact", "weights")
HINT = "`hgnas pretrain macro --cell-artifact DIR --out DIR`"


def cell_artifact_digest(path: str | Path) -> str:
    """The sha256 of a cell artifact's artifact.json (what a macro generator is tied to)."""
    manifest = Path(path) / ARTIFACT_FILE
    if not manifest.is_file():
        raise ArtifactError(f"cell-generator artifact {str(path)!r} has no {ARTIFACT_FILE}; "
                            "pass the folder `hgnas pretrain cells --out` wrote")
    return file_sha256(manifest)


def write_artifact(out_dir: str | Path, manifest: dict[str, Any],
                   state: dict[str, torch.Tensor]) -> Path:
    """Write the weights, then `artifact.json` (manifest + format header + weights digest)."""
    out_dir = Path(out_dir)
    (out_dir / ARTIFACT_FILE).unlink(missing_ok=True)  # no old manifest over new weights
    path = out_dir / WEIGHTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    try:
        save_file(tensors, str(tmp), metadata={"format": FORMAT_NAME,
                                               "format_version": str(FORMAT_VERSION)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "package_version": __version__}
    weights = {"file": WEIGHTS_FILE, "sha256": file_sha256(path), "tensors": len(tensors)}
    write_json_atomic({**header, **manifest, "weights": weights}, out_dir / ARTIFACT_FILE)
    return out_dir


def read_manifest(path: str | Path, cell_artifact: str | Path | None = None) -> dict[str, Any]:
    """The manifest of a complete macro-generator artifact of this format version; with
    `cell_artifact`, also checks that it is the cell artifact the generator was trained with."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"macro-generator artifact {str(path)!r} is not a folder; write one "
                            f"with {HINT}")
    if not (path / ARTIFACT_FILE).is_file():
        raise ArtifactError(f"{path} has no {ARTIFACT_FILE}: not a (complete) macro-generator "
                            f"artifact; write one with {HINT}")
    try:
        manifest = read_json(path / ARTIFACT_FILE, "artifact manifest")
    except DataError as err:
        raise ArtifactError(str(err)) from None
    if manifest.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{path / ARTIFACT_FILE} is not a macro-generator artifact (format "
                            f"{manifest.get('format')!r}, expected {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"macro-generator artifact {path} has format version {version!r} (written by "
            f"hgnas-ray {manifest.get('package_version', '?')}); this hgnas-ray {__version__} "
            f"reads format version {FORMAT_VERSION} only: re-run `hgnas pretrain macro` with "
            "this version, or load it with the hgnas-ray that wrote it")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ArtifactError(f"{path / ARTIFACT_FILE} lacks {missing}; the artifact is corrupt: "
                            f"write it again with {HINT}")
    if cell_artifact is not None:
        check_cell_artifact(path, manifest, cell_artifact)
    return manifest


def check_cell_artifact(path: Path, manifest: dict[str, Any], cell_artifact: str | Path) -> None:
    trained = manifest["cell_artifact"]
    given = cell_artifact_digest(cell_artifact)
    if given != trained.get("sha256"):
        raise ArtifactError(
            f"macro generator {path} was trained with another cell artifact ({trained.get('path')}"
            f", artifact.json sha256 {str(trained.get('sha256'))[:12]}); {cell_artifact} has "
            f"sha256 {given[:12]}: pass the cell artifact it was trained with, or train one for "
            f"this cell artifact with `hgnas pretrain macro --cell-artifact {cell_artifact}`")


def read_artifact(path: str | Path, cell_artifact: str | Path | None = None
                  ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The manifest and the weights; `ArtifactError` says what is wrong."""
    path = Path(path)
    manifest = read_manifest(path, cell_artifact)
    entry = manifest["weights"]
    file = path / entry.get("file", WEIGHTS_FILE)
    if not file.is_file():
        raise ArtifactError(f"artifact {path} lacks its weights {WEIGHTS_FILE}; copy the whole "
                            f"artifact folder, or write it again with {HINT}")
    if entry.get("sha256") != file_sha256(file):
        raise ArtifactError(f"{file} differs from the file the artifact was written with "
                            "(sha256 mismatch): it was changed or truncated; write the artifact "
                            "again")
    try:
        return manifest, load_file(str(file))
    except (SafetensorError, OSError) as err:
        raise ArtifactError(f"{file} is not a readable safetensors file: {err}") from None
