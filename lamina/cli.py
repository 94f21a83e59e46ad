"""The ``lamina`` command (also ``python -m lamina``).

Subcommands: ``demo``, ``untar URL``, ``verify-images FOLDER``, ``predict MODEL INPUT...`` (`lamina.cli_predict`),
``serve MODEL`` (`lamina.serve`). Every error is one line on stderr, ``lamina <command>: <what went wrong>``,
with an exit status scripts can test: 0 success; 1 bad input (a file that cannot be read, inputs that failed,
no network); 2 usage error (an unknown option, a bad value); 130 interrupted. ``lamina --traceback ...`` shows
the Python traceback of an error instead.
"""

from __future__ import annotations

import argparse
import sys

from .cli_predict import CommandError, add_parser as add_predict_parser, one_line, positive_int

EXIT_CODES = ("exit status: 0 success; 1 bad input (unreadable file, failed inputs, no network); 2 usage error; "
              "130 interrupted")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors in one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``lamina`` argument parser with every subcommand."""
    from . import __version__
    parser = _Parser(prog="lamina", description="lamina: a layered deep-learning library", epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"lamina {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("demo", help="train the chapter-1 pets example on the bundled sample").set_defaults(run=_demo)
    untar = sub.add_parser("untar", help="download and extract a dataset (a URL or a URLs name such as PETS)")
    untar.add_argument("url")
    untar.set_defaults(run=_untar)
    verify = sub.add_parser("verify-images", help="list the images under FOLDER that fail to open")
    verify.add_argument("folder")
    verify.set_defaults(run=_verify_images)
    add_predict_parser(sub)
    serve = sub.add_parser("serve", help="serve an exported model over HTTP: a web page and a JSON API",
                           epilog="needs the serve extra: pip install 'lamina[serve]'")
    serve.add_argument("model", help="a file written by learn.export()")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    serve.add_argument("--port", type=positive_int, default=8000, help="port (default 8000)")
    serve.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps ...")
    serve.add_argument("--max-batch", type=positive_int, default=32, help="largest batch of requests (default 32)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0,
                       help="how long a request waits for others to batch with (default 5)")
    serve.add_argument("--no-batching", action="store_true", help="predict each request on its own")
    serve.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body (default 10 MB)")
    serve.set_defaults(run=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (argparse exits with 2 on a usage error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CommandError as e:
        if args.traceback:
            raise
        print(f"lamina {args.command}: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f"lamina {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the command line's promise: one line, never a traceback
        if args.traceback:
            raise
        known = isinstance(e, (OSError, ValueError, LookupError, TypeError, ImportError)) or \
            type(e).__module__.startswith("lamina")
        hint = "" if known else f" ({type(e).__name__}; run 'lamina --traceback {args.command} ...' for details)"
        print(f"lamina {args.command}: {one_line(e)}{hint}", file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace) -> int:
    from .demo import main as demo
    demo()
    return 0


def _untar(args: argparse.Namespace) -> int:
    from .data.external import URLs, untar_data
    url = getattr(URLs, args.url, None) if args.url.isidentifier() else args.url
    if not isinstance(url, str):
        raise CommandError(f"{args.url!r} is neither a URL nor a name in URLs (e.g. PETS, MNIST_TINY)", 2)
    print(untar_data(url))
    return 0


def _verify_images(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data.files import get_image_files, verify_images
    if not Path(args.folder).is_dir():
        raise CommandError(f"{args.folder} is not a folder")
    failed = verify_images(get_image_files(args.folder))
    for path in failed:
        print(path)
    return 1 if failed else 0


def _serve(args: argparse.Namespace) -> int:
    from .serve import serve
    return serve(args.model, host=args.host, port=args.port, device=args.device, max_batch=args.max_batch,
                 max_wait_ms=args.max_wait_ms, batching=not args.no_batching, max_upload_mb=args.max_upload_mb)


if __name__ == "__main__":
    sys.exit(main())
