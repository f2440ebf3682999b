"""bench/image_layers.py's measure of a layer: the bytes of the files a step created or
changed, not the change of the folder's total."""

from __future__ import annotations

import os
from pathlib import Path

from bench.image_layers import added_bytes, snapshot


def test_a_layer_holds_created_and_changed_files_only(tmp_path: Path) -> None:
    folder = tmp_path / "venv"
    (folder / "lib").mkdir(parents=True)
    (folder / "lib" / "kept.py").write_bytes(b"k" * 100)
    (folder / "lib" / "changed.py").write_bytes(b"c" * 10)
    (folder / "pip.py").write_bytes(b"p" * 5000)
    before = snapshot({"/opt/venv": folder})
    assert sum(size for size, _ in before.values()) == 5110
    (folder / "pip.py").unlink()  # a deletion: whiteouts only
    (folder / "lib" / "changed.py").write_bytes(b"C" * 30)
    os.utime(folder / "lib" / "changed.py", ns=(1, 1))  # a changed file whatever the clock
    (folder / "lib" / "new.py").write_bytes(b"n" * 7)
    after = snapshot({"/opt/venv": folder})
    assert added_bytes(before, after) == 30 + 7
    assert added_bytes(after, after) == 0
