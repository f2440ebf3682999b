"""The model repository: every model folder under ``models_dir``, loaded once at start-up.

A folder that fails to load does not stop the others: it is kept with its reason, its readiness
is false, and requests for it get a 503 that says why.

Only folders whose name is a model name (``MODEL_NAME_PATTERN``: one path segment, never ``..``)
are served, and a folder must resolve inside ``models_dir``: a symlinked model folder is
followed when it points to another folder under ``models_dir`` (``latest -> digits-v3``) and
refused when it leads outside (mount or copy such a model into ``models_dir`` instead). A name
that a client sends is checked against these rules before anything touches the disk.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from app.errors import InvalidInputError, McdropError, ModelNotFoundError, ModelNotReadyError
from app.registry.card import CARD_FILE, MODEL_NAME_PATTERN
from app.registry.loading import load_model_folder
from app.registry.served import LoadOptions, ServedModel

logger = logging.getLogger(__name__)
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
OUTSIDE = "the folder is a symlink that leads outside models_dir (not served)"


def check_model_name(name: str) -> None:
    """InvalidInputError (422) unless ``name`` can name a model folder (see the module doc)."""
    if _MODEL_NAME.match(name) is None:
        raise InvalidInputError(
            "name",
            "not a model name: one path segment of letters, digits, '_', '.' or '-', "
            "at most 128 characters, starting with a letter or digit",
        )


@dataclass(frozen=True)
class ModelEntry:
    """One folder of the repository: the loaded model, or why it could not be loaded."""

    name: str
    folder: Path
    model: ServedModel | None
    error: str | None

    @property
    def ready(self) -> bool:
        return self.model is not None


class ModelRepository:
    """Name -> model entry, for every folder with a ``model.yaml`` under ``root``."""

    def __init__(self, root: Path, options: LoadOptions) -> None:
        self.root = root
        self.options = options
        self._entries: dict[str, ModelEntry] = {}

    def load_all(self) -> None:
        """(Re)load every model folder; failures are logged and kept with their reason."""
        if not self.root.is_dir():
            logger.error("models directory %s does not exist", self.root)
            return
        entries: dict[str, ModelEntry] = {}
        for folder in self._model_folders():
            entry = self._load_entry(folder)
            if entry.name in entries:
                entry = ModelEntry(
                    entry.name,
                    folder,
                    None,
                    f"duplicate model name (also in {entries[entry.name].folder})",
                )
                logger.error("model folder %s: %s", folder, entry.error)
                key = f"{entry.name}@{folder.name}"
                entries[key] = entry
                continue
            entries[entry.name] = entry
        self._entries = entries

    def _model_folders(self) -> list[Path]:
        """Folders with a card whose names follow the rules (others are logged and skipped)."""
        folders = []
        for path in sorted(self.root.iterdir()):
            if not (path / CARD_FILE).is_file():
                continue
            if _MODEL_NAME.match(path.name) is None:
                logger.error("model folder %s: not a model name, not served", path)
                continue
            folders.append(path)
        return folders

    def _inside_root(self, folder: Path) -> bool:
        return folder.resolve().is_relative_to(self.root.resolve())

    def _load_entry(self, folder: Path) -> ModelEntry:
        if not self._inside_root(folder):
            logger.error("model folder %s: %s", folder, OUTSIDE)
            return ModelEntry(folder.name, folder, None, OUTSIDE)
        try:
            model = load_model_folder(folder, self.options)
        except McdropError as exc:
            logger.error("model folder %s failed to load: %s", folder, exc.message)
            return ModelEntry(folder.name, folder, None, exc.message)
        for warning in model.warnings:  # the audit's and the network's: what goes unsampled
            logger.warning("model '%s': %s", model.name, warning)
        return ModelEntry(model.name, folder, model, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def load(self, name: str) -> ModelEntry:
        """(Re)load one model from its folder (``root/name`` for a model not seen before).

        A failure keeps the model unready with the reason; the previous version, if any, is
        replaced either way so the repository never serves stale weights after a reload.
        """
        check_model_name(name)
        known = self._entries.get(name)
        folder = known.folder if known is not None else self.root / name
        if not (folder / CARD_FILE).is_file():
            raise ModelNotFoundError(name)
        entry = self._load_entry(folder)
        if entry.name != name:
            entry = ModelEntry(name, folder, None, f"its card names it '{entry.name}'")
        self._entries[name] = entry
        return entry

    def unload(self, name: str) -> ModelEntry:
        """Stop serving ``name``; it stays listed, unready, until loaded again."""
        known = self.entry(name)
        entry = ModelEntry(name, known.folder, None, "unloaded")
        self._entries[name] = entry
        return entry

    def folder_names(self) -> list[str]:
        """Every folder under the root that holds a model card (loaded or not)."""
        if not self.root.is_dir():
            return []
        return [folder.name for folder in self._model_folders()]

    def keyed_entries(self) -> list[tuple[str, ModelEntry]]:
        """Every entry with its key (the name, or ``name@folder`` for a duplicate name)."""
        return sorted(self._entries.items())

    def adopt(self, entries: list[tuple[str, ModelEntry]]) -> None:
        """Serve ``entries`` (keyed as in :meth:`keyed_entries`) instead of loading folders:
        an HTTP worker adopts the models its inference process loaded."""
        self._entries = dict(entries)

    def entries(self) -> list[ModelEntry]:
        """Every entry, ready or not, sorted by name."""
        return [self._entries[name] for name in sorted(self._entries)]

    def ready_models(self) -> list[ServedModel]:
        """Loaded models sorted by name."""
        return [e.model for e in self.entries() if e.model is not None]

    def entry(self, name: str) -> ModelEntry:
        """The entry called ``name``, ready or not; ModelNotFoundError if absent."""
        found = self._entries.get(name)
        if found is None:
            raise ModelNotFoundError(name)
        return found

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The ready model ``name`` (at ``version`` if given)."""
        found = self.entry(name)
        if found.model is None:
            raise ModelNotReadyError(name, found.error or "not loaded")
        if version is not None and version != found.model.version:
            raise ModelNotFoundError(name, version)
        return found.model
