"""The served model's files for download, so that `skinscan models pull URL` and the desktop app can use them:
`GET /model/files` (id, version, each file's sha256 and size) and `GET /model/files/{model.json,model.onnx}`,
behind the API key when one is set. The files are hashed once, when the engine loads (deps.EngineSlot)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse, Response

from skinscan import DISCLAIMER
from skinscan.api.deps import EngineSlot, get_engine, get_slot, require_api_key
from skinscan.runtime.engine import Engine
from skinscan.runtime.published import PublishedFile, PublishedModel

router = APIRouter(dependencies=[Depends(require_api_key)])
_MEDIA = {"model.json": "application/json", "model.onnx": "application/octet-stream"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong X-API-Key (only when the server has an API key)"},
    503: {"description": "the model is still loading, or its files cannot be offered"},
}


async def get_published(
    slot: Annotated[EngineSlot, Depends(get_slot)], engine: Annotated[Engine, Depends(get_engine)]
) -> PublishedModel:
    if slot.published is None:
        raise HTTPException(503, detail="this server cannot offer its model's files (they could not be read)")
    return slot.published


PublishedDep = Annotated[PublishedModel, Depends(get_published)]


@router.get("/model/files", summary="the served model's files: id, version, each file's sha256 and size",
            responses=_ERRORS)  # fmt: skip
async def model_files(published: PublishedDep) -> dict[str, Any]:
    files = {name: {"sha256": f.sha256, "size": f.size, "url": f"/model/files/{name}"}
             for name, f in published.files.items()}  # fmt: skip
    return {"id": published.id, "version": published.version, "files": files, "disclaimer": DISCLAIMER}


@router.get("/model/files/{name}", summary="one of the served model's files (model.json or model.onnx)",
            responses={**_ERRORS, 404: {"description": "no such file"}, 409: {"description": "changed on disk"}},
            response_class=Response)  # fmt: skip
async def model_file(name: str, published: PublishedDep) -> Response:
    file: PublishedFile | None = published.files.get(name)
    if file is None:
        raise HTTPException(404, detail=f"no model file {name!r}; the files are {', '.join(published.files)}")
    headers = {"ETag": f'"{file.sha256}"', "Cache-Control": "no-cache"}
    if file.content is not None:
        return Response(file.content, media_type=_MEDIA[name], headers=headers)
    if file.path is None or not file.unchanged():
        # what the index promised is no longer on disk: refuse, rather than send bytes that fail their own checksum
        raise HTTPException(409, detail=f"{name} changed on disk since this server loaded it; restart the server")
    return FileResponse(file.path, media_type=_MEDIA[name], headers=headers, filename=name)
