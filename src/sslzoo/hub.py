"""All file and network I/O for weights: resolve, download, verify, cache, save and push.

Resolution order for registry weights (documented in the README and tested):

1. ``pretrained_file=`` given by the caller;
2. a local hub folder: each directory of ``$SSLZOO_HUB`` (``os.pathsep``-separated), then the hub folder shipped
   inside the package (``sslzoo/zoo``); inside it ``<name>.<tag>/model.safetensors``;
3. the Hugging Face cache and hub through ``huggingface_hub`` (``HF_HUB_OFFLINE``, ``HF_HOME`` and
   ``HF_HUB_CACHE`` are read at call time);
4. a plain URL, downloaded atomically into ``$SSLZOO_CACHE``.

A file that the library resolves itself is checked against the registry's pinned sha256 on every load; a
mismatch is an error naming both hashes. Zoo weights are safetensors; pickles are read only with
``torch.load(weights_only=True)``, so a pickle that carries code is refused, never run.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from . import registry
from .errors import ChecksumError, CheckpointFormatError, SslzooError, UnsafeCheckpointError, WeightsNotFoundError

WEIGHTS_NAME = "model.safetensors"
FULL_WEIGHTS_NAME = "full.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
FORMAT_VERSION = 1
SHIPPED_HUB = registry.ZOO_INDEX.parent  # the hub folder shipped with the package (src/sslzoo/zoo)

PathLike = Union[str, os.PathLike]


def cache_dir() -> Path:
    """sslzoo's own cache (downloads, converted checkpoints, decoded data): ``$SSLZOO_CACHE`` or ``~/.cache/sslzoo``."""
    return Path(os.environ.get("SSLZOO_CACHE") or Path.home() / ".cache" / "sslzoo").expanduser()


def local_hub_dirs() -> list[Path]:
    """Local hub folders in resolution order: ``$SSLZOO_HUB`` entries, then the shipped one."""
    env = [Path(p).expanduser() for p in os.environ.get("SSLZOO_HUB", "").split(os.pathsep) if p]
    return env + [SHIPPED_HUB]


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment at call time (``HF_HUB_CACHE``, ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: PathLike, expected: Optional[str], *, recorded_in: Optional[PathLike] = None) -> str:
    """Hash ``path``; raise if it differs from ``expected`` (when one is pinned). Returns the actual hash.

    ``recorded_in`` names the ``config.json`` that recorded ``expected``, for a hub folder's own hash.
    """
    actual = sha256_file(path)
    if expected and actual != expected.lower():
        if recorded_in is not None:
            raise ChecksumError(
                f"{path} has sha256 {actual}, but its folder's {recorded_in} records {expected}: the weights were"
                " changed or damaged after the folder was written. Write the folder again (sslzoo.save_pretrained,"
                " `python -m training.publish`, `sslzoo convert`) or fetch it again."
            )
        raise ChecksumError(
            f"{path} has sha256 {actual}, but {expected} is pinned for it. The file is corrupt, truncated or not the"
            " published one: delete it and download it again (`sslzoo download NAME`)."
        )
    return actual


def load_checkpoint(path: PathLike) -> Any:
    """Read a checkpoint without executing code: safetensors, or a pickle through ``weights_only=True``.

    Raises:
        WeightsNotFoundError: no such file.
        UnsafeCheckpointError: the pickle holds objects other than tensors and containers (e.g. a whole module).
        CheckpointFormatError: the file is truncated or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"No weight file at {path}.")
    if path.suffix == ".safetensors":
        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointFormatError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path} is a pickle that holds Python objects, not only tensors (for example a whole model saved with"
            " torch.save(model)). sslzoo never unpickles code. In the environment that wrote it, load it and save"
            " `model.state_dict()` instead, then pass that file. Detail: " + str(e).splitlines()[0]
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointFormatError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from e


def load_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` state dict from ``path`` (see :func:`load_checkpoint`)."""
    obj = load_checkpoint(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointFormatError(
            f"{path} is not a flat state dict of tensors. If it is a training checkpoint of APS, PatchMix, DINO/ADCLR"
            " or MoCo v3, convert it with `sslzoo convert --from auto FILE OUT_DIR`."
        )
    return obj


def safetensors_metadata(path: PathLike) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


@dataclass
class LoadedWeights:
    state_dict: dict[str, torch.Tensor]
    path: Path
    sha256: str
    source: str


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _new_file_mode() -> int:
    umask = os.umask(0)  # reading the umask means setting it; it is put back at once
    os.umask(umask)
    return 0o666 & ~umask


def _commit(tmp: Path, path: Path) -> None:
    # mkstemp makes the file private (0600), and writers such as safetensors replace the temporary file with one of
    # their own; the result gets the permissions of any new file, after the writer is done
    os.chmod(tmp, _new_file_mode())
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def _atomic_file(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path``, renamed over it when the block succeeds and removed whatever happens."""
    tmp = _atomic_target(path)
    try:
        yield tmp
        _commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _sort_safetensors_metadata(path: Path) -> None:
    """Rewrite a safetensors header with its metadata in sorted order, in place.

    safetensors writes the metadata map in a random order, so saving the same tensors twice gave different bytes (and
    sha256s); sorted, a file is a function of its content. The header keeps its length, so the data does not move.
    """
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        if "__metadata__" not in header:
            return
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) > size:  # pragma: no cover - the same keys and values re-serialise to the same length
            raise SslzooError(f"Could not normalise the safetensors header of {path}.")
        f.seek(8)
        f.write(text.ljust(size, b" "))


def save_safetensors(tensors: dict[str, torch.Tensor], path: PathLike, metadata: Optional[dict[str, str]] = None) -> Path:
    """Write tensors atomically (temporary file in the same folder, then rename); the same input gives the same bytes."""
    path = Path(path)
    with _atomic_file(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        _sort_safetensors_metadata(tmp)
    return path


def save_torch_atomic(obj: Any, path: PathLike) -> Path:
    """``torch.save`` through a temporary file in the same folder, then rename: a kill never leaves a partial file."""
    path = Path(path)
    with _atomic_file(path) as tmp:
        torch.save(obj, tmp)
    return path


def write_text_atomic(path: PathLike, text: str) -> Path:
    path = Path(path)
    with _atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def hf_download(repo_id: str, filename: str, *, revision: Optional[str] = None) -> Path:
    """Fetch one file through ``huggingface_hub`` (its cache first; the network unless ``HF_HUB_OFFLINE``)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=hf_cache_dir(),
                local_files_only=hf_offline(),
            )
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError, ValueError) as e:
        where = "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if hf_offline() else "the Hugging Face hub"
        raise WeightsNotFoundError(
            f"hf-hub:{repo_id}/{filename} could not be fetched from {where} ({type(e).__name__})."
        ) from e


def download_url(url: str, filename: str) -> Path:
    """Download ``url`` once into ``$SSLZOO_CACHE/downloads``; concurrent fetches each rename a complete file."""
    dest = cache_dir() / "downloads" / filename
    if dest.is_file():
        return dest
    if hf_offline():
        raise WeightsNotFoundError(f"{url} is not in {dest.parent} and HF_HUB_OFFLINE is set.")
    try:
        with _atomic_file(dest) as tmp:
            torch.hub.download_url_to_file(url, str(tmp), progress=True)
    except OSError as e:
        raise WeightsNotFoundError(f"Could not download {url}: {e}") from e
    return dest


def _no_weights_message(resolved: registry.Resolved, tried: list[str]) -> str:
    arch = resolved.architecture
    method = arch.method
    lines = [f"No pretrained weights could be found for '{resolved.name}' ({resolved.full_name})."]
    if tried:
        lines += ["Looked in:"] + [f"  - {t}" for t in tried]
    else:
        lines.append("sslzoo has no published weights for this architecture yet.")
    lines.append("What you can do:")
    w = resolved.weights
    if w is not None and w.convert_from:
        lines += _release_instructions(resolved, w)
    else:
        lines.append(
            f"  - pass a file: sslzoo.create_model('{resolved.name}', pretrained_file='model.safetensors')"
            " (a timm-layout state dict; safetensors or a weights-only pickle);"
        )
    if method.release and not (w and w.convert_from):
        lines.append(
            f"  - convert the authors' release ({method.release}) with `sslzoo convert --from {method.name} FILE OUT_DIR`"
            " and load 'local-dir:OUT_DIR';"
        )
    if w and w.convert_from:
        sub = w.hub_dir or resolved.full_name
        lines.append(f"  - for offline use, put the folder that `sslzoo convert` wrote at $SSLZOO_HUB/{sub}/;")
    elif w:
        sub = w.hub_dir or resolved.full_name
        lines.append(f"  - put the published folder at $SSLZOO_HUB/{sub}/ (offline use), or fetch it with `sslzoo download`;")
    lines += [
        f"  - train one: python -m training.pretrain --method {method.name} --arch {arch.name} --data PATH;",
        "  - see which names have weights: `sslzoo list --pretrained`.",
    ]
    return "\n".join(lines)


def _release_instructions(resolved: registry.Resolved, w: registry.Weights) -> list[str]:
    """How to get an entry whose file is the authors' release in an upstream layout, converted on first load."""
    repo = f"https://huggingface.co/{w.hf_hub_id}" if w.hf_hub_id else (w.url or resolved.architecture.method.release)
    if w.hf_filename:
        where = f"{repo}/blob/main/{w.hf_filename} (if it has moved, browse {repo}/tree/main)"
    else:
        where = f"{repo}/tree/main (not a fine-tuned best.pth: that is a pickled model, which sslzoo refuses to read)"
    return [
        f"  - download {w.description} from {where};",
        f"  - pass it: sslzoo.create_model('{resolved.name}', pretrained_file='FILE.pth'); it is converted from the"
        f" {w.convert_from} layout on first use and cached in {cache_dir() / 'converted'};",
        f"  - or convert it once: `sslzoo convert --from {w.convert_from} FILE.pth OUT_DIR`, then"
        " sslzoo.create_model('local-dir:OUT_DIR');",
    ]


def _unnamed_release(w: registry.Weights) -> bool:
    """An entry for a repository whose file names the registry does not know (the authors list none)."""
    return bool(w.convert_from) and w.hf_filename is None


def locate_registered(resolved: registry.Resolved, pretrained_file: Optional[PathLike] = None) -> tuple[Path, str]:
    """Find the weight file of a registry entry, following the resolution order. Returns (path, source)."""
    if pretrained_file is not None:
        return given_weights_path(pretrained_file), "pretrained_file"
    w = resolved.weights
    if w is None:
        raise WeightsNotFoundError(_no_weights_message(resolved, []))
    sub = w.hub_dir or resolved.full_name
    tried = []
    for folder in local_hub_dirs():
        candidate = folder / sub / w.filename
        if candidate.is_file():
            return candidate, f"local hub {folder}"
        tried.append(str(candidate))
    if w.hf_hub_id and _unnamed_release(w):
        tried.append(f"hf-hub:{w.hf_hub_id}: sslzoo records no file name for this entry (the authors' README lists none)")
    elif w.hf_hub_id:
        try:
            return hf_download(w.hf_hub_id, w.hf_filename or w.filename), f"hf-hub:{w.hf_hub_id}"
        except WeightsNotFoundError as e:
            tried.append(str(e))
    if w.url:
        try:
            return download_url(w.url, f"{resolved.full_name}-{Path(w.url).name}"), w.url
        except WeightsNotFoundError as e:
            tried.append(str(e))
    raise WeightsNotFoundError(_no_weights_message(resolved, tried))


def cached_copies(resolved: registry.Resolved) -> list[Path]:
    """Every local copy of an entry's weight file (local hubs, the Hugging Face cache, sslzoo's download cache)."""
    w = resolved.weights
    if w is None:
        return []
    sub = w.hub_dir or resolved.full_name
    found = [d / sub / w.filename for d in local_hub_dirs() if (d / sub / w.filename).is_file()]
    if w.hf_hub_id and not _unnamed_release(w):
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(w.hf_hub_id, w.hf_filename or w.filename, cache_dir=hf_cache_dir())
        if isinstance(hit, str):
            found.append(Path(hit))
    if w.url:
        path = cache_dir() / "downloads" / f"{resolved.full_name}-{Path(w.url).name}"
        if path.is_file():
            found.append(path)
    return found


def given_weights_path(pretrained_file: PathLike) -> Path:
    """The weight file behind a ``pretrained_file=``: the file itself, or the weights of a folder.

    A hub folder (one with ``config.json``) is verified against the sha256 it records before its path is returned,
    so a damaged folder is refused whichever model name it is given for.
    """
    given = Path(pretrained_file).expanduser()
    if given.is_dir() and (given / CONFIG_NAME).is_file():
        folder = HubFolder.open(f"local-dir:{given}")
        path = folder.weights_path
        if not path.is_file():
            raise WeightsNotFoundError(f"The hub folder {given} has no {path.name}.")
        verify_sha256(path, folder.sslzoo_cfg.get("sha256"), recorded_in=given / CONFIG_NAME)
        return path
    path = given / WEIGHTS_NAME if given.is_dir() else given
    if not path.is_file():
        raise WeightsNotFoundError(f"pretrained_file {path} does not exist.")
    return path


def _check_given_against_pin(resolved: registry.Resolved, path: Path, sha: str, what: str) -> None:
    """A file passed for a name that spells out a pinned tag must be the pinned file."""
    w = resolved.weights
    if w is None or not w.sha256 or not resolved.tag_given or sha == w.sha256.lower():
        return
    untagged = registry.split_tag(resolved.name)[0]
    raise ChecksumError(
        f"{path} ({what}) has sha256 {sha}, but the tag '{w.tag}' of {resolved.full_name} pins {w.sha256}: it is not"
        f" the published file. To load other weights on purpose, name the architecture without the tag"
        f" ('{untagged}'), or load a hub folder as 'local-dir:PATH'."
    )


def _load_given(resolved: registry.Resolved, pretrained_file: PathLike) -> LoadedWeights:
    """``pretrained_file=``: checked as every other source is (see :func:`load_registered_weights`)."""
    path = given_weights_path(pretrained_file)
    sha = sha256_file(path)
    w = resolved.weights
    given = Path(pretrained_file).expanduser()
    if given.is_dir() and (given / CONFIG_NAME).is_file():
        folder = HubFolder.open(f"local-dir:{given}")
        if w is not None and w.convert_from:
            # a converted folder stands for the upstream file it came from, which is what a convert_from entry pins
            origin = (folder.sslzoo_cfg.get("converted_from") or {}).get("sha256") or "unknown (not recorded)"
            _check_given_against_pin(resolved, path, origin, "the upstream file this folder was converted from")
        else:
            _check_given_against_pin(resolved, path, sha, "the weights of a hub folder")
        return LoadedWeights(load_state_dict(path), path, sha, "pretrained_file (hub folder)")
    _check_given_against_pin(resolved, path, sha, "pretrained_file")
    if w is not None and w.convert_from:
        return _load_converted(resolved, w, path, sha, "pretrained_file", announce_hash=False)
    return LoadedWeights(load_state_dict(path), path, sha, "pretrained_file")


def load_registered_weights(resolved: registry.Resolved, pretrained_file: Optional[PathLike] = None) -> LoadedWeights:
    """Locate, verify (pinned sha256) and read the weights of a registry entry.

    Every source is checked: a file the library resolves against the registry's pin; a ``pretrained_file=`` hub
    folder against the sha256 recorded in its ``config.json``; and a ``pretrained_file=`` (file or folder) given for
    a name that spells out a pinned tag (``NAME.tag``) against that pin. A file for a name without a tag is the
    caller's own choice: it is not held to a pin, and its hash is recorded.
    An entry with ``convert_from`` names a file in an upstream layout (the authors' release): it is converted on
    first load and the converted weights are cached, keyed by the source file's sha256 (see
    :mod:`sslzoo.convert.cache`); the sha256 is that of the source file, which is what the registry pins.
    """
    if pretrained_file is not None:
        return _load_given(resolved, pretrained_file)
    path, source = locate_registered(resolved)
    w = resolved.weights
    pinned = w.sha256 if w else None
    sha = verify_sha256(path, pinned)
    if w is not None and w.convert_from:
        return _load_converted(resolved, w, path, sha, source, announce_hash=not pinned)
    return LoadedWeights(load_state_dict(path), path, sha, source)


def _load_converted(
    resolved: registry.Resolved, w: registry.Weights, path: Path, sha: str, source: str, *, announce_hash: bool
) -> LoadedWeights:
    from .convert.cache import load_converted

    assert w.convert_from is not None
    sd, weights_path, converted_now = load_converted(
        path, sha, name=resolved.full_name, layout=w.convert_from, num_heads=resolved.architecture.num_heads
    )
    if converted_now:
        print(
            f"sslzoo: {resolved.full_name}: converted {path.name} from the {w.convert_from} layout; cached in"
            f" {weights_path.parent}.",
            file=sys.stderr,
        )
        if announce_hash:
            print(
                f"sslzoo: sha256 of {path.name}: {sha} (not pinned). To pin it, set sha256=\"{sha}\" in the"
                f" {resolved.full_name} entry of sslzoo/registry.py WEIGHTS; any other file is then refused.",
                file=sys.stderr,
            )
    return LoadedWeights(sd, weights_path, sha, f"{source}, converted from the {w.convert_from} layout")


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
                    " DIR), publish a run with `python -m training.publish`, or convert an upstream checkpoint with"
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
    def is_sslzoo(self) -> bool:
        return "sslzoo" in self.config

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

    def load_state_dict(self) -> tuple[dict[str, torch.Tensor], str]:
        """The backbone weights, checked against the sha256 recorded in ``config.json``."""
        source, _, ref = self.name.partition(":")
        path = self.weights_path
        if source == "hf-hub" and not path.is_file():
            repo, revision = _parse_hf_ref(ref)
            path = hf_download(repo, path.name, revision=revision)
        sha = verify_sha256(path, self.sslzoo_cfg.get("sha256"), recorded_in=self.root / CONFIG_NAME)
        return load_state_dict(path), sha


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
    from timm.models import PretrainedCfg

    from .card import render_card
    from .models import describe_vit, timm_architecture

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
