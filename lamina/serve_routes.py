"""The routes of `lamina.serve`: the page, ``/health``, ``/info`` and ``/predict`` for each application, with
request models that put the model's own fields (a table's columns, collab's ids) in the OpenAPI schema.

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at run time, and the
request models are local to the functions that build them."""

import base64
import io
import numbers
from pathlib import Path
from typing import Any, Optional, Union

from fastapi import Body, File, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool

from .cli_predict import one_line
from .inference import mask_png, overlay_png

__all__ = ["add_routes", "PredictionOut", "MAX_IMAGE_PIXELS"]

SHOWN_VALUES = 1000  # category values and ids listed by /info for the page's suggestions
INPUT_ERRORS = (ValueError, LookupError, TypeError, OSError)  # a bad input (422), not a server fault (500)
MAX_IMAGE_PIXELS = 40_000_000  # 40 megapixels: a 6000×6000 photo, not a decompression bomb
HINTS = {"image": "send the image as the multipart/form-data field 'file'",
         "tabular": "send a JSON object with every column (null for a missing value); GET /info lists them",
         "collab": 'send a JSON object {"user": ..., "item": ...}'}


class PredictionOut(BaseModel):
    """A prediction: the label or value, and the probabilities; masks as base64 PNGs."""

    prediction: Union[str, float, list, None] = Field(None, description="class name, labels, value(s); null for a mask")
    probability: Optional[float] = Field(None, description="the predicted class's probability (mask: mean confidence)")
    probabilities: Optional[dict[str, float]] = Field(None, description="each class's probability")
    pixel_share: Optional[dict[str, float]] = Field(None, description="share of the pixels of each code (masks)")
    mask_png: Optional[str] = Field(None, description="base64 greyscale PNG, pixel value = code (masks)")
    overlay_png: Optional[str] = Field(None, description="base64 PNG of the input tinted by code (masks)")


ERRORS = {413: {"description": "the body (or the image's pixel count) is over the limit"},
          415: {"description": "the upload is not an image"},
          422: {"description": "a wrong or missing field, or an input the model cannot take"}}


def add_routes(app: Any, learn: Any, app_kind: str, kind: str | None, batcher: Any, limit: int) -> None:
    """Add the page, ``/health``, ``/info`` and ``/predict`` (for ``app_kind``) to ``app``."""
    page = (Path(__file__).parent / "assets" / "serve.html").read_text(encoding="utf-8")
    info = {"application": app_kind, "target": kind, "vocab": _plain(getattr(learn.dls, "vocab", None) or []),
            "max_body_bytes": limit, "batching": {"max_batch": batcher.max_batch, "max_wait_ms": batcher.max_wait * 1e3},
            **{"image": _image_info, "tabular": _table_info, "collab": _pair_info}[app_kind](learn)}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health", summary="the server is up")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/info", summary="what the model takes and returns")
    def model_info() -> dict:
        return info

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        said = "; ".join(f"{'.'.join(map(str, e['loc'][1:] or e['loc']))}: {e['msg']}" for e in errors)
        return JSONResponse(status_code=422, content={"detail": f"{said} ({HINTS[app_kind]})", "errors": errors})

    {"image": _image_route, "tabular": _row_route, "collab": _pair_route}[app_kind](app, learn, batcher)


async def _answer(batcher: Any, item: Any) -> dict:
    try:
        result = await batcher.submit(item)
    except INPUT_ERRORS as e:
        raise HTTPException(422, one_line(e)) from e
    except Exception as e:  # noqa: BLE001 - a server fault, said in one line
        raise HTTPException(500, f"{type(e).__name__}: {one_line(e)}") from e
    return result_json(result)


# --- images ----------------------------------------------------------------------------------------------


def _image_info(learn: Any) -> dict:
    return {"input": {"field": "file", "content": "multipart/form-data"}}


def _image_route(app: Any, learn: Any, batcher: Any) -> None:
    @app.post("/predict", response_model=PredictionOut, response_model_exclude_none=True, responses=ERRORS,
              summary="predict an image")
    async def predict(file: UploadFile = File(..., description="the image (JPEG, PNG, WebP ...)")) -> dict:
        data = await file.read()
        try:
            await run_in_threadpool(check_image, data, file.filename)
        except OverflowError as e:
            raise HTTPException(413, str(e)) from e
        except ValueError as e:
            raise HTTPException(415, str(e)) from e
        return await _answer(batcher, data)


# --- table rows ------------------------------------------------------------------------------------------


def _table_info(learn: Any) -> dict:
    processor = learn.dls.processor
    classes = processor.classes
    cats = [{"name": c, "kind": "categorical", "values": _plain(list(classes[c])[1:SHOWN_VALUES + 1])
             if c in classes else []} for c in processor.input_cats]
    return {"columns": cats + [{"name": c, "kind": "continuous"} for c in processor.cont_names]}


def _row_route(app: Any, learn: Any, batcher: Any) -> None:
    processor = learn.dls.processor
    category = Optional[Union[str, int, float, bool]]
    fields = {f"c{i}": (category, Field(..., alias=name, description="categorical; null when missing"))
              for i, name in enumerate(processor.input_cats)}
    fields.update({f"x{i}": (Optional[float], Field(..., alias=name, description="continuous; null when missing"))
                   for i, name in enumerate(processor.cont_names)})
    Row = create_model("TabularRow", __config__=ConfigDict(extra="forbid"), **fields)  # noqa: N806

    @app.post("/predict", response_model=PredictionOut, response_model_exclude_none=True, responses=ERRORS,
              summary="predict a table row")
    async def predict(row: Row = Body(..., description="every input column, by name")) -> dict:  # type: ignore[valid-type]
        values = row.model_dump(by_alias=True)
        return await _answer(batcher, {k: (float("nan") if v is None and k in processor.cont_names else v)
                                       for k, v in values.items()})


# --- collab pairs ----------------------------------------------------------------------------------------


def _pair_info(learn: Any) -> dict:
    dls = learn.dls
    return {"user_name": dls.user_name, "item_name": dls.item_name,
            "users": _plain(list(dls.classes[dls.user_name])[1:SHOWN_VALUES + 1]),
            "items": _plain(list(dls.classes[dls.item_name])[1:SHOWN_VALUES + 1])}


def _id_type(vocab: Any) -> type:
    """int when every id seen in training is an integer (JSON "7" would not match 7), else str."""
    ids = list(vocab)[1:]
    return int if ids and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in ids) else str


def _pair_route(app: Any, learn: Any, batcher: Any) -> None:
    dls = learn.dls
    user_type, item_type = _id_type(dls.classes[dls.user_name]), _id_type(dls.classes[dls.item_name])
    Pair = create_model(  # noqa: N806
        "Pair", __config__=ConfigDict(extra="forbid"),
        user=(user_type, Field(..., description=f"a {dls.user_name} seen in training")),
        item=(item_type, Field(..., description=f"a {dls.item_name} seen in training")))

    @app.post("/predict", response_model=PredictionOut, response_model_exclude_none=True, responses=ERRORS,
              summary="predict a rating")
    async def predict(pair: Pair = Body(...)) -> dict:  # type: ignore[valid-type]
        return await _answer(batcher, {dls.user_name: pair.user, dls.item_name: pair.item})


def _plain(values: Any) -> list:
    """JSON-safe values (numpy scalars to Python ones, anything else to text)."""
    out = []
    for v in values:
        v = v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v
        out.append(v if isinstance(v, (str, int, float, bool)) or v is None else str(v))
    return out


def result_json(result: Any) -> dict:
    """The JSON of a `Prediction`; masks as base64 PNGs (codes, and an overlay when the input image is known)."""
    out = result.to_dict()
    if result.mask is not None:
        out["mask_png"] = base64.b64encode(mask_png(result.mask)).decode()
        if result.image is not None:
            out["overlay_png"] = base64.b64encode(overlay_png(result.image, result.mask)).decode()
    return out


def check_image(data: bytes, filename: str | None) -> None:
    """Check an upload before it joins a batch.

    Raises:
        ValueError: when ``data`` is not an image PIL can open (the server's 415).
        OverflowError: when it has more than `MAX_IMAGE_PIXELS` pixels (the server's 413).
    """
    from PIL import Image, UnidentifiedImageError
    name = repr(filename) if filename else "the upload"
    try:
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
            image.verify()
    except Image.DecompressionBombError as e:
        raise OverflowError(f"{name} has too many pixels ({one_line(e)}): send a smaller image") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        why = "not in an image format PIL reads" if isinstance(e, UnidentifiedImageError) else one_line(e)
        raise ValueError(f"{name} is not an image lamina can read ({why}); send a JPEG, PNG, WebP, BMP or GIF "
                         "file in the multipart field 'file'") from e
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise OverflowError(f"{name} is {size[0]}×{size[1]} pixels; this server takes at most "
                            f"{MAX_IMAGE_PIXELS:,} pixels: send a smaller image")
