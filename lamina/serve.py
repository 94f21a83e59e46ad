"""``lamina serve``: an exported learner behind a small web page and a JSON API (FastAPI + uvicorn).

Endpoints: ``GET /`` the page (upload an image or fill a row, see the prediction and the probabilities, a
segmentation as an overlay); ``POST /predict`` (an image: multipart field ``file``; a tabular row: a JSON
object of column values, null for a missing value; collab: ``{"user": ..., "item": ...}``); ``GET /info``
(what the model takes and returns); ``GET /health``; ``GET /docs`` and ``/openapi.json`` (FastAPI's).

Requests are batched: a request waits up to ``max_wait_ms`` for others, up to ``max_batch`` of them go
through the model in one ``get_preds`` pass. The passes run one at a time on a worker thread (a Learner
keeps per-pass state, so two passes at once would mix), which keeps the event loop free to take requests.
Bodies over ``max_upload_mb`` get 413 before they are parsed; a file that is not an image, 415; a wrong or
missing field, 422; an input the model cannot take (an unknown user ...), 422 with the reason.

Example:
    >>> app = create_app(load_learner("pets.pkl"))       # then: uvicorn.run(app), or TestClient(app)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .inference import application, predict_each, target_kind

__all__ = ["Batcher", "create_app", "serve"]

ROW_BODY_LIMIT = 64 * 1024  # a table row or a pair is a few hundred bytes


class Batcher:
    """Collects concurrent requests into batches for ``predict(items) -> results`` (one result or exception
    per item), run on one worker thread.

    Args:
        predict: the batch function.
        max_batch: the largest batch (1: no batching).
        max_wait_ms: how long a request that finds the worker idle waits for others to join it.
    """

    def __init__(self, predict: Callable[[list], list], max_batch: int = 32, max_wait_ms: float = 5.0):
        self.predict, self.max_batch, self.max_wait = predict, max(1, int(max_batch)), max(0.0, max_wait_ms) / 1000
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lamina-predict")
        self.batch_sizes: list[int] = []  # for tests and benchmarks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    async def submit(self, item: Any) -> Any:
        """The prediction of ``item``, batched with concurrent ones. Raises what the prediction raised."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first call, or a new event loop (a test client starts its own)
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._run(self._queue))  # kept: the loop holds tasks weakly
        future = loop.create_future()
        await self._queue.put((item, future))
        return await future

    async def _run(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Wait for company only when a request finds the worker idle: requests that queued up during the
            # previous pass go at once (their clients are already waiting; more would come only after answers).
            idle = queue.empty()
            batch = [await queue.get()]
            deadline = loop.time() + (self.max_wait if idle else 0.0)
            while len(batch) < self.max_batch:
                try:
                    batch.append(queue.get_nowait() if not queue.empty() else
                                 await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time())))
                except asyncio.TimeoutError:
                    break
            self.batch_sizes.append(len(batch))
            try:
                results = await loop.run_in_executor(self.executor, self.predict, [item for item, _ in batch])
            except Exception as e:  # noqa: BLE001 - every waiting request learns why
                results = [e] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():  # the client went away
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


class _BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes gets 413 before the app parses it (announced by
    Content-Length, or counted while it arrives; bodies under the limit are buffered and passed on)."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limit:
            return await self._too_large(send, int(length))
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size, more = size + len(chunks[-1]), message.get("more_body", False)
            if size > self.limit:
                return await self._too_large(send, size)
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Callable, size: int) -> None:
        import json
        detail = json.dumps({"detail": f"the request body is {size} bytes; this server takes at most {self.limit} "
                                       "(lamina serve --max-upload-mb raises it)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(detail)).encode())]})
        await send({"type": "http.response.body", "body": detail})


def create_app(learn: Any, max_batch: int = 32, max_wait_ms: float = 5.0, batching: bool = True,
               max_upload_mb: float = 10.0) -> Any:
    """A FastAPI app serving ``learn`` (see the module for the endpoints), wrapped in the body-size limit.

    Args:
        learn: the learner (e.g. ``load_learner('pets.pkl')``): an image, tabular or collab model.
        max_batch, max_wait_ms: request batching (see `Batcher`); ``batching=False`` predicts one at a time.
        max_upload_mb: the largest image upload (a row or a pair is limited to 64 KB).

    Raises:
        ImportError: when FastAPI is missing (``pip install 'lamina[serve]'``).
        ValueError: for a model of another kind.
    """
    try:
        from fastapi import FastAPI
    except ImportError as e:
        raise ImportError("lamina serve needs FastAPI and uvicorn: pip install 'lamina[serve]'") from e
    from .serve_routes import add_routes
    app_kind = application(learn)
    kind = target_kind(learn)
    with_image = kind == "mask"

    def predict(items: list) -> list:
        return predict_each(learn, items, num_workers=0, with_image=with_image)

    batcher = Batcher(predict, max_batch if batching else 1, max_wait_ms if batching else 0)
    app = FastAPI(title="lamina model server", version=_version(),
                  description=f"A lamina {app_kind} model ({type(learn.model).__name__}): POST /predict")
    limit = int(max_upload_mb * 1e6) if app_kind == "image" else ROW_BODY_LIMIT
    add_routes(app, learn, app_kind, kind, batcher, limit)
    app.state.batcher, app.state.learn = batcher, learn
    app.add_middleware(_BodyLimit, limit=limit)
    return app


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu",
          **kwargs: Any) -> int:
    """Load ``model`` (a ``learn.export()`` file) and serve it with uvicorn until interrupted.

    Args:
        model: the exported learner.
        host, port: where to listen (the default, 127.0.0.1, takes connections from this machine only).
        device: where the model runs.
        **kwargs: `create_app`'s batching and size options.
    """
    try:
        import uvicorn
    except ImportError as e:
        raise ImportError("lamina serve needs FastAPI and uvicorn: pip install 'lamina[serve]'") from e
    from .cli_predict import load_for_inference
    app = create_app(load_for_inference(model, device), **kwargs)
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0


def _version() -> str:
    from . import __version__
    return __version__
