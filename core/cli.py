"""Command-line front end: `image-search [global options] COMMAND ...` (no command opens the desktop app)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from core import __version__
from core.config import ConfigError, Settings, add_setting_arguments, settings_from_arguments
from core.images import ImageError
from core.indexer import IndexProgress
from core.jobs import queue_for
from core.model import WeightsError
from core.paths import display_path, path_json
from core.store import SearchFilter, StoreError
from core.store.base import hit_json, record_json

USER_ERRORS = (ConfigError, StoreError, WeightsError, ImageError, LookupError)


def global_options() -> argparse.ArgumentParser:
    """Options accepted before or after the command; each also has an IMAGE_SEARCH_* variable."""
    parser = argparse.ArgumentParser(add_help=False)
    add_setting_arguments(parser)
    return parser


def search_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-k", type=int, default=10, help="number of results (default: 10)")
    p.add_argument("--min-score", type=float, help="only results at least this similar (-1..1)")
    p.add_argument("--max-score", type=float, help="only results at most this similar (-1..1)")
    p.add_argument("--text", help="only files whose name or folder contains every one of these words")
    p.add_argument("--exact", action="store_true",
                   help="score every indexed image instead of the search graph (embedded index only; slower)")
    p.add_argument("--json", action="store_true", help="one JSON object per query per line")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = global_options()
    parser = argparse.ArgumentParser(
        prog="image-search", parents=[common],
        description="Find visually similar images in your collection (VGG16 descriptors). "
        "Without a command (or with `gui`), `image-search` opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"image-search {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("index", parents=[common], help="add or update folders (incremental)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--prune-missing", action="store_true",
                   help="forget images whose files are missing even where they may only be out of reach "
                   "(an unmounted drive, an unreadable folder); by default they are kept and reported")
    p = sub.add_parser("search", parents=[common, search_options()], help="search with image files")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p = sub.add_parser("similar", parents=[common, search_options()], help="search from an indexed image")
    p.add_argument("ref", metavar="ID_OR_PATH")
    p = sub.add_parser("duplicates", parents=[common], help="groups of near-duplicate images")
    p.add_argument("--threshold", type=float, default=0.95, help="minimum similarity (default: 0.95)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("remove", parents=[common], help="forget the images under folders")
    p.add_argument("paths", nargs="+", metavar="FOLDER")
    p = sub.add_parser("info", parents=[common], help="backend, image count, model, data location")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("serve", parents=[common], help="run the HTTP API and web page (headless)")
    p.add_argument("--host", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: 5000)")
    p.add_argument("--token", help="bearer token required by /api (needed when binding beyond loopback)")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    if args.command == "serve":
        return settings_from_arguments(args, api_host=args.host, api_port=args.port, api_token=args.token)
    return settings_from_arguments(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        settings = settings_from(args)
        if args.command == "serve":
            from core.server import serve

            return serve(settings)
        from core.engine import Engine

        engine = Engine(settings)
        try:
            return COMMANDS[args.command](engine, args)
        finally:
            queue_for(engine).shutdown()
            engine.close()
    except USER_ERRORS as exc:
        print(f"image-search: error: {display_path(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("image-search: interrupted", file=sys.stderr)
        return 130


def cmd_index(engine, args) -> int:
    queue, bar = queue_for(engine), ProgressBar()
    # The run is a job of the engine's one queue (core.jobs), like the API's and the desktop's: it waits for
    # any other run on this engine and reports through the same observer.
    unsubscribe = queue.subscribe(lambda job: job["state"] == "running" and job["total"] and bar.update(
        IndexProgress(job["done"], job["total"], job["current"] or "", job["eta_s"])))
    job = queue.submit_index(args.paths, prune_missing=args.prune_missing)
    try:
        queue.wait(job.id)
        report = queue.result(job.id)  # raises what the run raised: the exit status follows its kind
    except KeyboardInterrupt:
        queue.cancel(job.id)
        queue.wait(job.id, 60)
        # Everything committed so far stays; a re-run resumes from there.
        print("\nimage-search: interrupted; images indexed so far are kept", file=sys.stderr)
        return 130
    finally:
        unsubscribe()
    bar.close()
    if args.json:
        print(json.dumps({**report.to_dict(), "count": engine.store.count()}))
    else:
        for path, reason in report.skipped:
            print(f"skipped {legible(path)}: {reason}")
        for path, warning in report.warnings:
            print(f"warning {legible(path)}: {warning}")
        print(report.summary() + f"; {engine.store.count()} images in the index")
        if report.missing_kept:
            print("(image-search index --prune-missing forgets the missing images)")
    return 0


def cmd_search(engine, args) -> int:
    status = 0
    for image in args.images:
        try:
            hits = engine.search(image, args.k, search_filter(args))
        except ImageError as exc:
            print(f"image-search: error: {legible(image)}: {exc.reason}", file=sys.stderr)
            status = 1
            continue
        print_hits(image, hits, args.json)
    return status


def cmd_similar(engine, args) -> int:
    print_hits(args.ref, engine.similar(args.ref, args.k, search_filter(args)), args.json)
    return 0


def cmd_duplicates(engine, args) -> int:
    queue = queue_for(engine)
    job = queue.submit_duplicates(args.threshold)
    queue.wait(job.id)
    groups = queue.result(job.id)
    if args.json:
        print(json.dumps({"threshold": args.threshold, "groups": [[record_json(r) for r in g] for g in groups]}))
    else:
        for n, group in enumerate(groups, 1):
            print(f"group {n} ({len(group)} images):")
            for record in group:
                print(f"  {legible(record.path)}")
        print(f"{len(groups)} groups of near-duplicates (similarity >= {args.threshold})")
    return 0


def cmd_remove(engine, args) -> int:
    queue = queue_for(engine)
    job = queue.submit_remove(args.paths)
    queue.wait(job.id)
    removed = queue.result(job.id)
    print(f"{removed} images removed from the index")
    return 0


def cmd_info(engine, args) -> int:
    info = engine.info()
    if args.json:
        print(json.dumps(info))
    else:
        for key in ("backend", "count", "model_label", "weights", "location", "version"):
            print(f"{key:>11}: {info[key]}")
    return 0


COMMANDS = {"index": cmd_index, "search": cmd_search, "similar": cmd_similar, "duplicates": cmd_duplicates,
            "remove": cmd_remove, "info": cmd_info}


def search_filter(args) -> SearchFilter:
    return SearchFilter(min_score=args.min_score, max_score=args.max_score, text=args.text, exact=args.exact)


def print_hits(query: str, hits, as_json: bool) -> None:
    """One query's hits: a JSON line (`query` in core.paths.path_json form as `query`/`query_bytes`, then
    `results` of hit_json), or legible text."""
    if as_json:
        query_json = {("query" if k == "path" else "query_bytes"): v for k, v in path_json(query).items()}
        print(json.dumps({**query_json, "results": [hit_json(h) for h in hits]}), flush=True)
        return
    print(f"{legible(query)}:")
    for hit in hits:
        print(f"  {hit.score:7.4f}  {legible(hit.record.path)}")
    if not hits:
        print("  (no results)")


def legible(path: str) -> str:
    """A path for a terminal line: display text (U+FFFD for undecodable bytes), control characters such
    as a newline in a name escaped, so one file stays one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in display_path(path))


class ProgressBar:
    """A one-line progress bar on a terminal's stderr; silent when stderr is not a terminal."""

    def __init__(self):
        self.enabled = sys.stderr.isatty()
        self.last = 0.0

    def update(self, p) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and p.done < p.total):
            return
        self.last = now
        width = 30
        filled = int(width * p.done / max(p.total, 1))
        eta = f"ETA {p.eta_s:4.0f} s" if p.eta_s is not None else ""
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {p.done}/{p.total} {eta}  ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.last:
            sys.stderr.write("\n")
