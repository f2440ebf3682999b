"""The model repository: every model folder under ``models_dir``, loaded once at start-up.

A folder that fails to load does not stop the others: it is kept with its reason, its readiness
is false, and requests for it get a 503 that says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from app.errors import McdropError, ModelNotFoundError, ModelNotReadyError
from app.registry.card import CARD_FILE
from app.registry.loading import LoadOptions, ServedModel, load_model_folder

logger = logging.getLogger(__name__)


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
        for folder in sorted(p for p in self.root.iterdir() if (p / CARD_FILE).is_file()):
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

    def _load_entry(self, folder: Path) -> ModelEntry:
        try:
            model = load_model_folder(folder, self.options)
        except McdropError as exc:
            logger.error("model folder %s failed to load: %s", folder, exc.message)
            return ModelEntry(folder.name, folder, None, exc.message)
        return ModelEntry(model.name, folder, model, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def load(self, name: str) -> ModelEntry:
        """(Re)load one model from its folder (``root/name`` for a model not seen before).

        A failure keeps the model unready with the reason; the previous version, if any, is
        replaced either way so the repository never serves stale weights after a reload.
        """
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
        return sorted(p.name for p in self.root.iterdir() if (p / CARD_FILE).is_file())

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
