"""Hub folders: ``model.safetensors`` + ``config.json`` (timm's hub format) + ``README.md``, opened, written, pushed.

``timm.create_model("local-dir:DIR", pretrained=True)`` reads the folders too; what timm's config cannot express
(LayerNorm eps, a fixed sin-cos position embedding, the weights' sha256) is in the ``sslzoo`` section of the config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
from timm.models import PretrainedCfg

from .. import registry
from ..card import render_card
from ..errors import CheckpointFormatError, SslzooError, WeightsNotFoundError
from ..files import PathLike, load_state_dict, save_safetensors, sha256_file, write_text_atomic
from .checksum import verify_sha256
from .huggingface import hf_download
from .local_hubs import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from ..vit import describe_vit, timm_architecture

FORMAT_VERSION = 1


def _parse_hf_ref(ref: str) -> tuple[str, Optional[str]]:
    repo, _, revision = ref.partition("@")
    return repo, revision or None


@dataclass
class HubFolder:
    """A hub folder (``model.safetensors`` + ``config.json`` + ``README.md``), local or on the Hugging Face hub."""

    name: str
    root: Path
    config: dict[str, Any]

    @classmethod
    def open(cls, name: str) -> "HubFolder":
        """Open ``local-dir:PATH`` or ``hf-hub:ORG/REPO[@revision]``."""
        source, _, ref = name.partition(":")
        if source == "local-dir":
            root = Path(ref).expanduser()
            config_path = root / CONFIG_NAME
            if not config_path.is_file():
                raise WeightsNotFoundError(
                    f"{root} is not a hub folder: it has no {CONFIG_NAME}. Write one with sslzoo.save_pretrained(model,"
                    " DIR), publish a run with `sslzoo publish`, or convert an upstream checkpoint with"
                    " `sslzoo convert`."
                )
        elif source == "hf-hub":
            repo, revision = _parse_hf_ref(ref)
            config_path = hf_download(repo, CONFIG_NAME, revision=revision)
            root = config_path.parent
        else:
            raise SslzooError(f"'{name}' is not a hub reference (expected local-dir:PATH or hf-hub:REPO).")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CheckpointFormatError(f"{config_path} is not valid JSON: {e}") from e
        return cls(name, root, config)

    @property
    def is_plain_timm(self) -> bool:
        """A folder timm wrote (``architecture`` and ``pretrained_cfg``, no sslzoo ``model_args``): timm's to build."""
        return "sslzoo" not in self.config and "model_args" not in self.config and "architecture" in self.config

    @property
    def sslzoo_cfg(self) -> dict[str, Any]:
        return dict(self.config.get("sslzoo", {}))

    @property
    def model_args(self) -> dict[str, Any]:
        return dict(self.config.get("model_args", {}))

    @property
    def num_classes(self) -> int:
        return int(self.config.get("num_classes", 0))

    @property
    def norm_eps(self) -> float:
        return float(self.sslzoo_cfg.get("norm_eps", 1e-6))

    @property
    def pos_embed(self) -> registry.PosEmbed:
        return self.sslzoo_cfg.get("pos_embed", "learn")

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        cfg = dict(self.config.get("pretrained_cfg", {}))
        cfg["architecture"] = self.config.get("architecture")
        for key in ("input_size", "mean", "std"):
            if isinstance(cfg.get(key), list):
                cfg[key] = tuple(cfg[key])
        return cfg

    @property
    def weights_path(self) -> Path:
        return self.root / self.sslzoo_cfg.get("weights", WEIGHTS_NAME)

    def fetch_weights(self) -> Path:
        """The weight file, fetched through ``huggingface_hub`` (its cache, ``HF_HUB_OFFLINE``) for an hf-hub folder."""
        source, _, ref = self.name.partition(":")
        path = self.weights_path
        if source == "hf-hub" and not path.is_file():
            repo, revision = _parse_hf_ref(ref)
            path = hf_download(repo, path.name, revision=revision)
        return path

    def load_state_dict(self) -> tuple[dict[str, torch.Tensor], str]:
        """The backbone weights, checked against the sha256 recorded in ``config.json``."""
        path = self.fetch_weights()
        sha = verify_sha256(path, self.sslzoo_cfg.get("sha256"), recorded_in=self.root / CONFIG_NAME)
        return load_state_dict(path), sha


@dataclass
class GivenWeights:
    """The weight file behind a ``pretrained_file=``, its sha256, and its hub folder when it came in one."""

    path: Path
    sha256: str
    folder: Optional[HubFolder] = None


def open_given(pretrained_file: PathLike) -> GivenWeights:
    """A ``pretrained_file=``: the file itself, or the weights of a folder, hashed once.

    A hub folder (one with ``config.json``) is verified against the sha256 it records, so a damaged folder is refused
    whichever model name it is given for; so is its weight file given by itself (``FOLDER/model.safetensors``).
    """
    given = Path(pretrained_file).expanduser()
    if given.is_dir() and (given / CONFIG_NAME).is_file():
        folder = HubFolder.open(f"local-dir:{given}")
        path = folder.weights_path
        if not path.is_file():
            raise WeightsNotFoundError(f"The hub folder {given} has no {path.name}.")
        return _verified(folder, path)
    path = given / WEIGHTS_NAME if given.is_dir() else given
    if not path.is_file():
        raise WeightsNotFoundError(f"pretrained_file {path} does not exist.")
    folder = _recording_folder(path)
    return _verified(folder, path) if folder is not None else GivenWeights(path, sha256_file(path))


def _verified(folder: HubFolder, path: Path) -> GivenWeights:
    sha = verify_sha256(path, folder.sslzoo_cfg.get("sha256"), recorded_in=folder.root / CONFIG_NAME)
    return GivenWeights(path, sha, folder)


def _recording_folder(path: Path) -> Optional[HubFolder]:
    """The hub folder whose ``config.json`` records a sha256 for the weight file ``path``, if it sits in one."""
    if not (path.parent / CONFIG_NAME).is_file():
        return None
    folder = HubFolder.open(f"local-dir:{path.parent}")
    recorded = folder.sslzoo_cfg.get("sha256") and folder.weights_path.resolve() == path.resolve()
    return folder if recorded else None


def push_to_hub(
    directory: PathLike,
    repo_id: str,
    *,
    token: Optional[str] = None,
    private: bool = False,
    commit_message: str = "Upload sslzoo model",
) -> str:
    """Upload a hub folder written by :func:`sslzoo.save_pretrained` to the Hugging Face hub.

    The folder is checked first (all three files present, weights matching the hash in ``config.json``), so a
    damaged folder is never published. Returns the URL of the commit.
    """
    from huggingface_hub import HfApi

    directory = Path(directory)
    missing = [n for n in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME) if not (directory / n).is_file()]
    if missing:
        raise SslzooError(f"{directory} lacks {', '.join(missing)}: write it with sslzoo.save_pretrained(model, DIR) first.")
    HubFolder.open(f"local-dir:{directory}").load_state_dict()
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(directory), repo_id=repo_id, repo_type="model", commit_message=commit_message)
    return str(getattr(info, "commit_url", info))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _timm_compatibility_notes(norm_eps: float, pos_embed: str) -> str:
    notes = []
    if norm_eps != 1e-6:
        notes.append(
            f"- This model uses LayerNorm eps {norm_eps:g}. timm's config.json cannot express a LayerNorm eps, so"
            " `timm.create_model('local-dir:...')` builds it with eps 1e-6: same weights, features that differ slightly."
            " `sslzoo.create_model('local-dir:...')` reads the eps from the `sslzoo` section of config.json and is exact."
        )
    if pos_embed == "sincos":
        notes.append(
            "- The position embedding is a fixed 2-D sin-cos table stored with the weights. timm loads it as a"
            " trainable parameter; sslzoo keeps it frozen, as the method trains it."
        )
    return "\n".join(notes)


def save_pretrained(model: torch.nn.Module, directory: PathLike, *, card: Optional[Union[str, dict]] = None) -> Path:
    """Write a hub folder: ``model.safetensors``, ``config.json`` (timm's hub format) and a ``README.md`` card.

    ``timm.create_model("local-dir:DIR", pretrained=True)`` and ``sslzoo.create_model("local-dir:DIR")`` rebuild the
    model from it. The preprocessing config is also stored in the safetensors header, so a bare weight file still
    knows its input size, mean and std. Details timm's config cannot express (a LayerNorm eps other than 1e-6, a fixed
    sin-cos position embedding) are recorded in the ``sslzoo`` section of ``config.json``, which sslzoo honours.

    Args:
        model: a timm ``VisionTransformer`` (typically from :func:`sslzoo.create_model`).
        directory: the folder to write (created if needed; existing files are replaced atomically).
        card: markdown text of the card, or a dict of fields for :func:`sslzoo.card.render_card`; None renders one
            from the model's configs.
    """
    directory = Path(directory)
    model_args, norm_eps, pos_embed = describe_vit(model)
    timm_keys = set(PretrainedCfg.__dataclass_fields__)
    pcfg = {
        k: _jsonable(v)
        for k, v in (getattr(model, "pretrained_cfg", None) or {}).items()
        if k in timm_keys and v is not None and k not in ("architecture", "url", "file", "state_dict", "source", "hf_hub_id", "hf_hub_filename")
    }
    pcfg.setdefault("input_size", [3, *model.patch_embed.img_size])
    pcfg["num_classes"] = model.num_classes
    pcfg["fixed_input_size"] = not model.dynamic_img_size
    pcfg.setdefault("first_conv", "patch_embed.proj")
    pcfg.setdefault("classifier", "head")
    pcfg["custom_load"] = False
    scfg = dict(getattr(model, "sslzoo_cfg", None) or {})
    name = scfg.get("name") or directory.name
    metadata = {
        "format": "pt",
        "sslzoo_format_version": str(FORMAT_VERSION),
        "sslzoo_name": str(name),
        "architecture": timm_architecture(model_args),
        "model_args": json.dumps(model_args),
        "norm_eps": repr(norm_eps),
        "pos_embed": pos_embed,
        "num_classes": str(model.num_classes),
        **{k: json.dumps(pcfg[k]) for k in ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std") if k in pcfg},
    }
    weights_path = save_safetensors(model.state_dict(), directory / WEIGHTS_NAME, metadata)
    sha = sha256_file(weights_path)
    config = {
        "architecture": timm_architecture(model_args),
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "global_pool": model.global_pool,
        "model_args": model_args,
        "pretrained_cfg": pcfg,
        "sslzoo": {
            **{k: v for k, v in scfg.items() if k not in ("sha256", "source")},
            "name": name,
            "norm_eps": norm_eps,
            "pos_embed": pos_embed,
            "weights": WEIGHTS_NAME,
            "sha256": sha,
            "format_version": FORMAT_VERSION,
        },
    }
    write_text_atomic(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    if not isinstance(card, str):
        fields = dict(card or {})
        fields.setdefault("method", scfg.get("method"))
        notes = _timm_compatibility_notes(norm_eps, pos_embed)
        if notes:
            fields["sections"] = {**(fields.get("sections") or {}), "Loading with plain timm": notes}
        card = render_card(str(name), fields)
    write_text_atomic(directory / CARD_NAME, card)
    return directory
