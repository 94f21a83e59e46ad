"""The ``lamina`` command: ``lamina demo``, ``lamina untar URL``, ``lamina verify-images FOLDER``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="lamina", description="lamina: a layered deep-learning library")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="train the chapter-1 pets example on the bundled sample")
    untar = sub.add_parser("untar", help="download and extract a dataset (a URL or a URLs name such as PETS)")
    untar.add_argument("url")
    verify = sub.add_parser("verify-images", help="list the images under FOLDER that fail to open")
    verify.add_argument("folder")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo
        demo()
        return 0
    if args.command == "untar":
        from .data.external import URLs, untar_data
        url = getattr(URLs, args.url, None) if args.url.isidentifier() else args.url
        if not isinstance(url, str):
            print(f"lamina untar: {args.url!r} is neither a URL nor a name in URLs (e.g. PETS, MNIST_TINY)",
                  file=sys.stderr)
            return 2
        print(untar_data(url))
        return 0
    from .data.files import get_image_files, verify_images
    failed = verify_images(get_image_files(args.folder))
    for path in failed:
        print(path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
