"""``fcnxs models list|fetch|add|path|remove``: the registry's weights, by name."""

from __future__ import annotations

import argparse
from pathlib import Path

from fcnxs.core.errors import FcnxsError
from fcnxs.hub import fetch
from fcnxs.hub.registry import Entry, add_entry, entries, remove_entry
from fcnxs.model.loading import converted_path, named_file


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="pretrained weights by name: list, fetch, add your own, path, remove",
        description="Every command that takes a model (--model, --init, --vgg16) takes a name "
        "of this registry too: the first use fetches it into the cache ($FCNXS_HOME, else "
        "~/.cache/fcnxs) and converts an FCN once; later uses make no request. FCNXS_MIRROR "
        "(a base URL) replaces every entry's host; FCNXS_OFFLINE=1 forbids the network.",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True, help="what to do")
    sub.add_parser("list", help="every name: what it is, its size, whether it is cached")
    f = sub.add_parser("fetch", help="download (or take from --from) and check, now")
    f.add_argument("names", nargs="+", metavar="NAME", help="registry names")
    f.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="FILE",
        help="a file obtained by hand, checked as a download would be (one NAME)",
    )
    a = sub.add_parser("add", help="your own entry (a team's server, object storage)")
    a.add_argument("name", metavar="NAME", help="lower case, digits, '.', '-', '_'")
    a.add_argument("url", metavar="URL", help="where the file is (http, https)")
    a.add_argument("--sha256", metavar="HEX", help="the file's sha256, checked on download")
    path = sub.add_parser("path", help="where a fetched model is")
    path.add_argument("name", metavar="NAME", help="a registry name")
    remove = sub.add_parser("remove", help="delete a name's files from the cache")
    remove.add_argument("name", metavar="NAME", help="a registry name")
    p.set_defaults(run=run)


def _entry(name: str) -> Entry:
    known = entries(fetch.home())
    if name not in known:
        raise FcnxsError(f"{name}: not a registry name (`fcnxs models list` shows them)")
    if known[name].kind == "dataset":
        raise FcnxsError(f"{name}: a dataset, not a model (`fcnxs data fetch {name} -o DIR`)")
    return known[name]


def _files(entry: Entry) -> list[Path]:
    raw = fetch.downloaded(entry)
    return [converted_path(entry), raw, Path(str(raw) + ".part")]


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(f"{'name':<18} {'cached':<7} {'size':>8}  what")
        for entry in entries(fetch.home()).values():
            cached = "yes" if any(p.exists() for p in _files(entry)[:2]) else "no"
            size = f"{entry.size / 1e6:.0f} MB" if entry.size else "?"
            print(f"{entry.name:<18} {cached:<7} {size:>8}  {entry.what}")
        return 0
    if args.action == "add":
        entry = add_entry(fetch.home(), args.name, args.url, args.sha256)
        print(f"{entry.name}: {entry.url} (in {fetch.home() / 'registry.json'})")
        return 0
    if args.action == "fetch":
        if args.source is not None and len(args.names) != 1:
            raise FcnxsError("--from takes one NAME")
        for name in args.names:
            print(f"{name}: {named_file(_entry(name), copy_from=args.source)}")
        return 0
    entry = _entry(args.name)
    if args.action == "path":
        found = next((p for p in _files(entry)[:2] if p.exists()), None)
        if found is None:
            raise FcnxsError(f"{args.name}: not fetched yet (`fcnxs models fetch {args.name}`)")
        print(found)
        return 0
    removed = [p for p in _files(entry) if p.exists()]
    for p in removed:
        p.unlink()
    forgotten = remove_entry(fetch.home(), args.name)
    print(f"{args.name}: removed {len(removed)} file(s)" + (" and its entry" if forgotten else ""))
    return 0
