"""Cost of the stochasticity audit at load, per bundled model (the issue's budget: 2 s).

    python -m bench.audit [--repeats 3]

Each model is loaded ``--repeats`` times in this process; the audit's own clock
(``AuditReport.seconds``) is printed as median and range. A measurement of this machine, so a
benchmark and not a test.
"""

from __future__ import annotations

import argparse
import statistics

from app.registry.loading import load_model_folder
from bench.common import MODELS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    for folder in sorted(path for path in MODELS.iterdir() if (path / "model.yaml").exists()):
        seconds = []
        for _ in range(args.repeats):
            audit = load_model_folder(folder).audit
            if audit is None:
                break
            seconds.append(audit.report.seconds)
        if not seconds:
            print(f"{folder.name}: no audit")
            continue
        print(
            f"{folder.name}: median {statistics.median(seconds):.3f} s "
            f"(min {min(seconds):.3f}, max {max(seconds):.3f}, {len(seconds)} loads)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
