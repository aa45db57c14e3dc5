"""Command-line front end: `image-search [global options] COMMAND ...` (no command opens the desktop app)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from core import __version__
from core.config import ConfigError, Settings, add_setting_arguments, settings_from_arguments
from core.duplicates import KINDS, VariantHit, group_json, variant_json
from core.errors import EXIT_STATUS, UserError
from core.images import ImageError
from core.indexer import IndexProgress
from core.jobs import queue_for
from core.paths import display_path, path_json
from core.store import SearchFilter
from core.store.annotations import PhotoFilter
from core.store.base import hit_json, record_json

WORDS_ONLY_K = 50  # results of a words-only search unless -k says otherwise


def global_options() -> argparse.ArgumentParser:
    """Options accepted before or after the command; each also has an IMAGE_SEARCH_* variable."""
    parser = argparse.ArgumentParser(add_help=False)
    add_setting_arguments(parser)
    return parser


def search_options() -> argparse.ArgumentParser:
    """Options of `search` and `similar`: -k, score bounds, words, dates, camera, --exact, --variants, --json."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-k", type=int, help=f"number of results (default: 10; {WORDS_ONLY_K} for words only)")
    p.add_argument("--min-score", type=float, help="only results at least this similar (-1..1)")
    p.add_argument("--max-score", type=float, help="only results at most this similar (-1..1)")
    p.add_argument("--text", help="only images whose name, folder, tags or camera contain every one of these "
                   "words (a \"quoted phrase\" is one word; case and accents as a person expects)")
    p.add_argument("--after", metavar="DATE", help="only photos taken on or after DATE (ISO 8601 date or date-time)")
    p.add_argument("--before", metavar="DATE", help="only photos taken on or before DATE (a date includes that day)")
    p.add_argument("--camera", metavar="WORDS", help="only photos from a camera whose name contains these words")
    p.add_argument("--exact", action="store_true",
                   help="score every indexed image instead of the search graph (embedded index only; slower)")
    p.add_argument("--variants", action="store_true",
                   help="also find mirrored and 90/180/270-degree rotated copies (5 searches; a match through a "
                   "transform is marked with it, JSON `variant`)")
    p.add_argument("--json", action="store_true", help="one JSON object per query per line")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The `image-search` parser: global options and one subcommand per entry of COMMANDS, plus `serve`."""
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
    p = sub.add_parser("search", parents=[common, search_options()],
                       help="search with image files, or by words alone (--text, newest first)")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p = sub.add_parser("similar", parents=[common, search_options()], help="search from an indexed image")
    p.add_argument("ref", metavar="ID_OR_PATH")
    p = sub.add_parser("tag", parents=[common], help="add or remove tags of indexed images")
    p.add_argument("refs", nargs="+", metavar="PATH_OR_ID")
    p.add_argument("--add", action="append", default=[], metavar="WORD", help="a tag to add (repeatable)")
    p.add_argument("--remove", action="append", default=[], metavar="WORD", help="a tag to remove (repeatable)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("tags", parents=[common], help="every tag with how many images carry it")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("duplicates", parents=[common], help="groups of duplicate images with the copy to keep; "
                       "optionally trash or move the other copies")
    p.add_argument("--threshold", type=float, default=0.95, help="minimum similarity (default: 0.95)")
    p.add_argument("--json", action="store_true", help="print one JSON object {threshold, groups}")
    p.add_argument("--reference", action="append", metavar="DIR",
                   help="a reference folder (repeatable): its images are kept first and never trashed or moved; "
                   "replaces the reference_folders setting")
    p.add_argument("--kind", choices=KINDS, default="near-duplicate",
                   help="act on the copies of this kind and the tighter ones (default: near-duplicate, i.e. exact "
                   "and near-duplicate; similar widens it to similar shots)")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--trash", action="store_true", help="move the copies not kept to the system trash")
    act.add_argument("--move-to", metavar="DIR", help="move the copies not kept into DIR, keeping their relative paths")
    p.add_argument("--yes", action="store_true", help="do it without asking (needed without a terminal)")
    p.add_argument("--variants", action="store_true",
                   help="also match mirrored and 90/180/270-degree rotated copies (slow: decodes and embeds every "
                   "indexed image 4 more times); they are offered as similar, never acted on by default")
    sub.add_parser("undo", parents=[common], help="undo the last trash or move of duplicates")
    p = sub.add_parser("labels", parents=[common], help="label the images indexed before the labels setting was on "
                       "(VGG16's ImageNet classifier; needs --labels true and the full weights file)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
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
    """The Settings for a parsed command line with the command's own flags (serve's address, --reference) on
    top; ConfigError for a --reference folder whose name contains a comma."""
    if args.command == "serve":
        return settings_from_arguments(args, api_host=args.host, api_port=args.port, api_token=args.token)
    if args.command == "duplicates" and args.reference:
        if any("," in folder for folder in args.reference):  # the setting is a comma-separated list
            raise ConfigError("a --reference folder whose name contains a comma is not supported")
        return settings_from_arguments(args, reference_folders=",".join(args.reference))
    return settings_from_arguments(args)


def main(argv: list[str] | None = None) -> int:
    """Run one command (`argv` defaults to sys.argv[1:]); returns the exit status: 0 done, 1 a user error
    (core.errors.EXIT_STATUS), 2 no command, 130 interrupted, else the command's own."""
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
    except UserError as exc:
        print(f"image-search: error: {display_path(str(exc))}", file=sys.stderr)
        return EXIT_STATUS[exc.kind]
    except KeyboardInterrupt:
        print("image-search: interrupted", file=sys.stderr)
        return 130


def run_job(queue, submit: Callable[[], Any]) -> Any:
    """Run the job that `submit()` puts on the engine's one queue (core.jobs), like the API's and the
    desktop's: it waits for any other run on this engine and reports through the same observer, drawn as a
    progress bar on stderr. Returns the job's result and raises what the run raised (the exit status follows
    its kind). On Ctrl-C the job is cancelled, KeyboardInterrupt propagates once it stopped (at most 60 s),
    and what it committed stays."""
    bar = ProgressBar()
    unsubscribe = queue.subscribe(lambda job: job["state"] == "running" and job["total"] and bar.update(
        IndexProgress(job["done"], job["total"], job["current"] or "", job["eta_s"])))
    job = submit()
    try:
        queue.wait(job.id)
        result = queue.result(job.id)
    except KeyboardInterrupt:
        queue.cancel(job.id)
        queue.wait(job.id, 60)
        raise
    finally:
        unsubscribe()
    bar.close()
    return result


def cmd_index(engine, args) -> int:
    """Index or update the folders and files in args.paths; exit status 0, or 130 when interrupted."""
    queue = queue_for(engine)
    try:
        report = run_job(queue, lambda: queue.submit_index(args.paths, prune_missing=args.prune_missing))
    except KeyboardInterrupt:  # everything committed so far stays; a re-run resumes from there
        print("\nimage-search: interrupted; images indexed so far are kept", file=sys.stderr)
        return 130
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
    """Search with each image file, or by words/dates/camera alone; exit status 1 when an image could not be read."""
    photo = photo_filter(args)
    if not args.images:
        if args.text is None and not photo.active():
            raise ConfigError("give image files to search with, or --text WORDS (or --after/--before/--camera)")
        records = engine.search_words(args.text, WORDS_ONLY_K if args.k is None else args.k, photo)
        print_words_results(engine, args.text, records, args.json)
        return 0
    status = 0
    for image in args.images:
        try:
            hits = engine.search(image, 10 if args.k is None else args.k, search_filter(args), photo,
                                 variants=args.variants)
        except ImageError as exc:
            print(f"image-search: error: {legible(image)}: {exc.reason}", file=sys.stderr)
            status = 1
            continue
        print_hits(image, hits, args.json, engine)
    return status


def cmd_similar(engine, args) -> int:
    """Search from an indexed image given by id or path; exit status 0."""
    hits = engine.similar(args.ref, 10 if args.k is None else args.k, search_filter(args), photo_filter(args),
                          variants=args.variants)
    print_hits(args.ref, hits, args.json, engine)
    return 0


def cmd_tag(engine, args) -> int:
    """Add and remove tags of indexed images and print each image's tags; exit status 0."""
    if not args.add and not args.remove:
        raise ConfigError("give --add WORD or --remove WORD")
    tags = engine.change_tags(args.refs, args.add, args.remove)
    records = engine.store.get_many(tags)
    if args.json:
        print(json.dumps({"images": [{**record_json(records[i]), "tags": t} for i, t in tags.items() if i in records]}))
    else:
        for image_id, image_tags in tags.items():
            if image_id in records:
                print(f"{legible(records[image_id].path)}: {', '.join(image_tags) or '(no tags)'}")
    return 0


def cmd_tags(engine, args) -> int:
    """Print every tag with how many images carry it, most used first; exit status 0."""
    counts = engine.tag_counts()
    if args.json:
        print(json.dumps({"tags": [{"tag": t, "count": n} for t, n in counts.items()]}))
    else:
        for tag, n in counts.items():
            print(f"{n:7d}  {tag}")
        if not counts:
            print("(no tags)")
    return 0


def cmd_labels(engine, args) -> int:
    """The labels pass as a job of the engine's queue, with a progress bar; Ctrl-C keeps what was labelled."""
    engine.require_labels()
    queue = queue_for(engine)
    try:
        report = run_job(queue, queue.submit_labels)
    except KeyboardInterrupt:
        print("\nimage-search: interrupted; images labelled so far are kept", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        for path, reason in report.skipped:
            print(f"skipped {legible(path)}: {reason}")
        print(report.summary())
    return 0


def cmd_duplicates(engine, args) -> int:
    """List the groups; with --trash or --move-to, act on the copies not kept after a confirmation. Exit
    status 3 when an action needs a confirmation that cannot be asked (no terminal, no --yes)."""
    queue = queue_for(engine)
    groups = run_job(queue, lambda: queue.submit_duplicates(args.threshold, variants=args.variants))
    out = {"threshold": args.threshold, "variants": args.variants, "groups": [group_json(g) for g in groups]}
    if not args.json:
        print_groups(groups, args.threshold)
    if not (args.trash or args.move_to):
        if args.json:
            print(json.dumps(out))
        return 0
    kinds = KINDS[: KINDS.index(args.kind) + 1]
    plan = engine.plan_duplicates(groups, kinds=kinds, action="move" if args.move_to else "trash",
                                  move_to=args.move_to)
    say = sys.stderr if args.json else sys.stdout  # --json keeps stdout for the one object
    for record in plan.records:  # the plan itself, file by file, before the question
        for path in record.paths:
            to = f"  ->  {legible(plan.destination(path))}" if plan.action == "move" else ""
            print(f"  {plan.action:<5}  {legible(path)}{to}", file=say)
    if not plan.records:
        print("nothing to do: no copy of the chosen kinds outside the reference folders", file=say)
        status = 0
    elif not args.yes and not confirm(plan.summary(), say):
        status = 0 if sys.stdin.isatty() else 3  # declined on a terminal; or nobody could be asked
    else:
        result = engine.act_on_duplicates(plan)
        for path, reason in result.skipped:
            print(f"skipped {legible(path)}: {reason}", file=say)
        print(f"{plan.summary()}: done for {len(result.done)}, {len(result.skipped)} skipped, "
              f"{result.bytes / 1e6:.1f} MB; `image-search undo` undoes it", file=say)
        out["result"] = action_json(result)
        status = 0
    if args.json:
        print(json.dumps(out))
    return status


def cmd_undo(engine, args) -> int:
    """Undo the last trash or move of duplicates; exit status 1 when every file was skipped, else 0."""
    result = engine.undo_last_action()
    for path, reason in result.skipped:
        print(f"skipped {legible(path)}: {reason}")
    if not result.done and not result.skipped:
        print("nothing to undo")
    else:
        print(f"{len(result.done)} files back in place, {len(result.skipped)} skipped")
    return 1 if result.skipped and not result.done else 0


def print_groups(groups, threshold: float) -> None:
    """Each group: its kind and size, the keeper with the reason, then each other copy's kind and score."""
    for n, group in enumerate(groups, 1):
        print(f"group {n}: {group.kind}, {len(group.members)} images")
        print(f"  keep     {legible(group.keeper.record.path)}  ({group.reason})")
        paths = {m.record.id: m.record.path for m in group.members}
        for member in group.others:
            notes = [member.variant] if member.variant else []
            notes += [f"copy of {legible(paths[member.copy_of])}"] if member.copy_of else []
            notes += ["reference folder"] if member.reference else []
            notes = "".join(f"  [{note}]" for note in notes)
            print(f"  {member.kind:<14} {member.score:.4f}  {legible(member.record.path)}{notes}")
    images = sum(len(g.members) for g in groups)
    print(f"{len(groups)} groups, {images} images (similarity >= {threshold})")


def confirm(question: str, out) -> bool:
    """Ask `question` on the terminal; False (and why) when stdin is not a terminal."""
    if not sys.stdin.isatty():
        print(f"{question}: not done; confirm with --yes when there is no terminal", file=out)
        return False
    print(f"{question}? [y/N] ", end="", file=out, flush=True)
    return input().strip().lower() in ("y", "yes")


def action_json(result) -> dict:
    """core.file_actions.Result as JSON: paths done, {path, reason} of each skipped one, bytes freed or moved."""
    return {"done": [path_json(p)["path"] for p in result.done], "bytes": result.bytes,
            "skipped": [{"path": path_json(p)["path"], "reason": r} for p, r in result.skipped],
            "cancelled": result.cancelled}


def cmd_remove(engine, args) -> int:
    """Forget the images under the folders in args.paths and print how many; exit status 0."""
    queue = queue_for(engine)
    job = queue.submit_remove(args.paths)
    queue.wait(job.id)
    removed = queue.result(job.id)
    print(f"{removed} images removed from the index")
    return 0


def cmd_info(engine, args) -> int:
    """Print the backend, image count, model, weights, data location and version; exit status 0."""
    info = engine.info()
    if args.json:
        print(json.dumps(info))
    else:
        for key in ("backend", "count", "model_label", "weights", "location", "version"):
            print(f"{key:>11}: {info[key]}")
        if info["labels"]:
            print(f"{'labels':>11}: on" + ("" if info["labels_meaningful"] else " (meaningless: random weights)"))
    return 0


COMMANDS = {"index": cmd_index, "search": cmd_search, "similar": cmd_similar, "duplicates": cmd_duplicates,
            "undo": cmd_undo, "remove": cmd_remove, "info": cmd_info, "tag": cmd_tag, "tags": cmd_tags,
            "labels": cmd_labels}


def search_filter(args) -> SearchFilter:
    """The SearchFilter of the --min-score, --max-score, --text and --exact flags."""
    return SearchFilter(min_score=args.min_score, max_score=args.max_score, text=args.text, exact=args.exact)


def photo_filter(args) -> PhotoFilter:
    """The PhotoFilter of --after, --before and --camera; ConfigError for a date that does not parse."""
    try:
        return PhotoFilter.parse(args.after, args.before, args.camera)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def annotation_json(note) -> dict:
    """`tags`, `labels`, `taken` (ISO 8601) and `camera` of a result, beside record_json's fields."""
    return {"tags": list(note.tags), "labels": list(note.labels), "taken": note.taken, "camera": note.camera} \
        if note else {"tags": [], "labels": [], "taken": None, "camera": None}


def print_words_results(engine, text: str | None, records, as_json: bool) -> None:
    """A words-only search: `{"query": null, "text": ..., "results": [record_json + score null + tags...]}`."""
    notes = engine.annotations_of(r.id for r in records)
    if as_json:
        results = [{**record_json(r), "score": None, **annotation_json(notes.get(r.id))} for r in records]
        print(json.dumps({"query": None, "text": text, "results": results}), flush=True)
        return
    for record in records:
        note = notes.get(record.id)
        print(f"  {(note.taken or '')[:19]:19}  {legible(record.path)}")
    if not records:
        print("  (no results)")


def print_hits(query: str, hits, as_json: bool, engine=None) -> None:
    """One query's hits: a JSON line (`query` in core.paths.path_json form as `query`/`query_bytes`, then
    `results` of hit_json with `tags`, `taken` and `camera`), or legible text."""
    if as_json:
        notes = engine.annotations_of(h.record.id for h in hits) if engine else {}
        query_json = {("query" if k == "path" else "query_bytes"): v for k, v in path_json(query).items()}
        results = [{**hit_json(h), **annotation_json(notes.get(h.record.id)), **variant_json(h)} for h in hits]
        print(json.dumps({**query_json, "results": results}), flush=True)
        return
    print(f"{legible(query)}:")
    for hit in hits:
        print(f"  {hit.score:7.4f}  {legible(hit.record.path)}"
              + (f"  [{hit.variant}]" if isinstance(hit, VariantHit) else ""))
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
        """Redraw for `p` (done, total, eta_s in seconds or None), at most every 0.1 s until the last."""
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
        """End the bar's line, if one was drawn."""
        if self.enabled and self.last:
            sys.stderr.write("\n")
