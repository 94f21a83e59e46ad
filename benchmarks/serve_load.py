"""Load test of ``lamina serve``: p50/p99 latency and requests per second, with and without request batching.

A real uvicorn server on 127.0.0.1 (a free port, in a thread of this process) serves a small model; ``--clients``
threads send ``--requests`` requests in all, each waiting for its answer before sending the next. Every run is
bounded (a timeout per request and per run) and stops by itself. Results go to ``benchmarks/SERVE.md``.

    python benchmarks/serve_load.py                       # image and tabular models, 500 requests, 8 clients
    python benchmarks/serve_load.py --apps tabular --requests 200

The image model is a resnet18 (untrained, pretrained=False: speed does not depend on the weights) on 64-px
images; the tabular one is ``tabular_learner``'s default MLP on an Adult-like table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))


@contextlib.contextmanager
def running(app: object, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL; stops it after."""
    import uvicorn
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def load(url: str, send: Callable, n_requests: int = 500, n_clients: int = 8, timeout: float = 120.0) -> dict:
    """``n_requests`` calls of ``send(client, url) -> response`` from ``n_clients`` threads (httpx clients).

    Returns:
        ``{"latencies": [s, ...], "errors": ["status: text", ...], "seconds": wall time}``.
    """
    import httpx
    counts = [n_requests // n_clients + (i < n_requests % n_clients) for i in range(n_clients)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + timeout

    def client(count: int) -> None:
        with httpx.Client(timeout=30.0) as http:
            for _ in range(count):
                if time.monotonic() > stop_at:
                    with lock:
                        errors.append("run timed out")
                    return
                start = time.perf_counter()
                try:
                    response = send(http, url)
                    failed = None if response.status_code == 200 else f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as e:
                    failed = f"{type(e).__name__}: {e}"
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if failed:
                        errors.append(failed)

    threads = [threading.Thread(target=client, args=(count,)) for count in counts]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 30)
    return {"latencies": latencies, "errors": errors, "seconds": time.perf_counter() - start}


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def image_app(folder: Path) -> tuple[object, Callable]:
    """A resnet18 on 64-px images, and a sender that uploads one JPEG."""
    from PIL import Image

    from lamina.vision.all import ImageDataLoaders, Resize, resnet18, vision_learner
    from lamina.vision.synth import make_image_folder
    files = make_image_folder(folder, n_per_class=8, size=(72, 80))
    dls = ImageDataLoaders.from_name_func(folder, files, label_func=lambda name: name[0].isupper(), valid_pct=0.25,
                                          seed=0, item_tfms=Resize(64), bs=8, num_workers=0)
    learn = vision_learner(dls, resnet18, pretrained=False)
    buffer = io.BytesIO()
    Image.open(files[0]).save(buffer, format="JPEG")
    payload = buffer.getvalue()
    return learn, lambda http, url: http.post(f"{url}/predict", files={"file": ("pet.jpg", payload, "image/jpeg")})


def tabular_app(folder: Path) -> tuple[object, Callable]:
    """The default tabular MLP on an Adult-like table, and a sender that posts one row."""
    from lamina.tabular.all import Categorify, FillMissing, Normalize, TabularDataLoaders, tabular_learner
    from lamina.tabular.synth import ADULT_CAT_NAMES, ADULT_CONT_NAMES, adult_like
    df = adult_like(400, seed=0)
    dls = TabularDataLoaders.from_df(df, y_names="salary", cat_names=ADULT_CAT_NAMES, cont_names=ADULT_CONT_NAMES,
                                     procs=[Categorify, FillMissing, Normalize], seed=0, device="cpu")
    learn = tabular_learner(dls)
    row = df[ADULT_CAT_NAMES + ADULT_CONT_NAMES].iloc[0]
    body = {k: (None if v != v else (v.item() if hasattr(v, "item") else v)) for k, v in row.items()}
    return learn, lambda http, url: http.post(f"{url}/predict", json=body)


def measure(app_name: str, n_requests: int, n_clients: int) -> list[dict]:
    """Both settings (batching on, off) for one model → a row of results each."""
    from lamina.serve import create_app
    with tempfile.TemporaryDirectory() as tmp:
        learn, send = {"image": image_app, "tabular": tabular_app}[app_name](Path(tmp) / "data")
        rows = []
        for batching in (True, False):
            app = create_app(learn, batching=batching)
            with running(app) as url:
                load(url, send, n_requests=16, n_clients=n_clients)  # warm-up: first passes, connections
                before = len(app.state.batcher.batch_sizes)
                result = load(url, send, n_requests=n_requests, n_clients=n_clients)
            sizes = app.state.batcher.batch_sizes[before:]
            rows.append({"app": app_name, "batching": batching, "requests": len(result["latencies"]),
                         "errors": len(result["errors"]), "p50_ms": 1e3 * percentile(result["latencies"], 50),
                         "p99_ms": 1e3 * percentile(result["latencies"], 99),
                         "req_per_s": len(result["latencies"]) / result["seconds"],
                         "mean_batch": statistics.mean(sizes) if sizes else 0.0})
            print(rows[-1], flush=True)
    return rows


def report(rows: list[dict], args: argparse.Namespace) -> str:
    import torch
    lines = ["# lamina serve under load", "",
             f"Measured {datetime.date.today()} by `python benchmarks/serve_load.py --requests {args.requests} "
             f"--clients {args.clients}` on {platform.machine()}, {os.cpu_count()} CPU cores (shared), torch "
             f"{torch.__version__}, CPU inference, {torch.get_num_threads()} torch threads. {args.clients} client "
             "threads each send one request, wait for the answer, then send the next; server and clients share the "
             "machine. Batching: up to 32 requests, waiting at most 5 ms (`lamina serve` defaults); without "
             "batching each request is its own pass (`--no-batching`).", "",
             "| model | batching | requests | errors | p50 latency (ms) | p99 latency (ms) | requests/s | mean batch |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['app']} | {'on' if r['batching'] else 'off'} | {r['requests']} | {r['errors']} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['req_per_s']:.0f} | {r['mean_batch']:.1f} |")
    lines += ["", "How to read it: a request's latency is its wait for the passes ahead of it plus its own pass. "
              "Batching pays when a pass costs more than the work around it (decoding, HTTP), as for the image "
              "model: fewer, larger passes. For a model cheaper than that work (the tabular MLP) there is little to "
              "save, and the wait for company can cost more than it saves. `mean batch` is the number of requests "
              "per pass; with the clients in the same process as the server, fewer requests are in flight at once "
              "than there are clients."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--apps", default="image,tabular", help="comma-separated: image, tabular")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "SERVE.md")
    args = parser.parse_args(argv)
    rows = [row for name in args.apps.split(",") for row in measure(name.strip(), args.requests, args.clients)]
    args.out.write_text(report(rows, args))
    print(f"wrote {args.out}")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
