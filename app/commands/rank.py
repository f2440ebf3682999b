"""``mcdrop rank``: which rows of an unlabelled pool to label next.

The pool streams past in chunks (memory flat in its size) and is scored here, on a server
(``--url``) or on a Ray cluster (``--ray``); the same seed gives the same picks on every path
and however the pool is chunked. Exit status: 0 ok, 1 a problem (unreadable pool, unknown model,
server error), 2 a usage error.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.engine.acquisition import STRATEGIES

if TYPE_CHECKING:
    from app.engine.ranking import Ranking
    from app.ranking.pool import Pool
    from app.ranking.runner import Pick, Progress, RankJob

SERVER_CHUNK_ROWS = 256
"""Rows per request with ``--url`` (the server's default ``max_rows_per_request``)."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``rank`` sub-command."""
    parser = commands.add_parser("rank", help="pick the pool rows most worth labelling")
    parser.add_argument("model", help="model folder, or its name under --models-dir (--url: name)")
    parser.add_argument("--data", type=Path, required=True, help="pool: a CSV or Parquet file")
    parser.add_argument("--k", type=int, required=True, help="how many rows to pick")
    parser.add_argument("--strategy", choices=STRATEGIES, default="bald")
    parser.add_argument("--out", type=Path, required=True, help="CSV of the picks")
    parser.add_argument("--n-samples", type=int, help="MC passes (default: the model's)")
    parser.add_argument("--seed", type=int, help="seed; drawn and printed if absent")
    parser.add_argument("--chunk-rows", type=int, help="rows per chunk (1024; --url: 256)")
    parser.add_argument(
        "--candidates", type=int, help="batchbald: top BALD rows to choose among (max(10k, 100))"
    )
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--url", help="score on this mcdrop server instead of in-process")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="score with Ray Data: no value starts Ray here; 'auto' or ray://HOST:10001 joins "
        "a cluster (needs mcdrop[ray])",
    )
    parser.add_argument("--ray-actors", type=int, default=2, help="model actors (--ray)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the flags, rank the pool, write the picks and print a summary."""
    usage = _usage_error(args)
    if usage is not None:
        print(f"mcdrop rank: {usage}", file=sys.stderr)
        return 2
    from app.client import McdropClientError
    from app.errors import McdropError
    from app.ranking.pool import Pool, PoolError, write_picks

    seed = args.seed if args.seed is not None else secrets.randbits(63)
    try:
        pool = Pool(args.data)
        ranking, picks = _rank(args, pool, seed)
    except (PoolError, McdropError, McdropClientError) as exc:
        print(f"mcdrop rank: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a strategy that does not fit the model's task
        print(f"mcdrop rank: {exc}", file=sys.stderr)
        return 2
    write_picks(args.out, pool.header, [(p.index, p.score, p.row) for p in picks])
    print(
        f"{len(picks)} rows picked by {ranking.strategy} ({ranking.n_samples} MC passes, "
        f"seed {ranking.seed}); wrote {args.out}"
    )
    return 0


def _usage_error(args: argparse.Namespace) -> str | None:
    if args.k < 1:
        return f"--k must be at least 1, got {args.k}"
    for flag in ("n_samples", "chunk_rows", "candidates", "ray_actors"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            return f"--{flag.replace('_', '-')} must be at least 1, got {value}"
    if args.candidates is not None and args.candidates < args.k:
        return f"--candidates ({args.candidates}) must be at least --k ({args.k})"
    if args.url is not None and args.ray is not None:
        return "--url and --ray are exclusive: score on a server or on Ray, not both"
    return None


def _rank(args: argparse.Namespace, pool: Pool, seed: int) -> tuple[Ranking, list[Pick]]:
    from tqdm import tqdm

    with tqdm(
        total=pool.total, unit="row", file=sys.stderr, disable=True if args.quiet else None
    ) as bar:
        if args.url is not None:
            return _rank_on_server(args, pool, seed, bar.update)
        return _rank_here(args, pool, seed, bar.update)


def _job(args: argparse.Namespace, seed: int, n_samples: int, chunk_rows: int) -> RankJob:
    from app.ranking.runner import RankJob

    return RankJob(
        strategy=args.strategy,
        k=args.k,
        n_samples=n_samples,
        seed=seed,
        chunk_rows=args.chunk_rows or chunk_rows,
        candidates=args.candidates,
    )


def _rank_here(
    args: argparse.Namespace, pool: Pool, seed: int, progress: Progress
) -> tuple[Ranking, list[Pick]]:
    from app.commands._shared import model_folder
    from app.registry.loading import load_model_folder

    folder = model_folder(args.models_dir, args.model)
    model = load_model_folder(folder)
    _check_task(args.strategy, model.card.task)
    job = _job(args, seed, args.n_samples or model.card.n_samples.default, 1024)
    if args.ray is not None:
        from app.ranking.distributed import rank_with_ray

        return rank_with_ray(
            folder, model.card.input.shape, pool, job, args.ray, args.ray_actors, progress
        )
    from app.ranking.runner import rank_locally

    return rank_locally(model, pool, job, progress)


def _rank_on_server(
    args: argparse.Namespace, pool: Pool, seed: int, progress: Progress
) -> tuple[Ranking, list[Pick]]:
    from app.client import McdropClient
    from app.ranking.runner import rank_remotely

    with McdropClient(args.url) as client:
        info = client.model(args.model)
        _check_task(args.strategy, info.task or "")
        job = _job(args, seed, args.n_samples or info.default_n_samples or 100, SERVER_CHUNK_ROWS)
        return rank_remotely(client, args.model, info.input_shape or [], pool, job, progress)


def _check_task(strategy: str, task: str) -> None:
    from app.tasks import TASKS

    known = TASKS.get(task)
    allowed = known.strategies if known is not None else ()
    if strategy not in allowed:
        raise ValueError(
            f"--strategy {strategy} does not apply to a {task} model (choose from "
            f"{', '.join(allowed)})"
        )
