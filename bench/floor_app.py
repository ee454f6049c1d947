"""The service app plus one route for the benchmark's HTTP floor: it reads the multipart upload
exactly as /predict does and returns a constant body, with no decoding and no inference."""

from __future__ import annotations

from typing import Annotated

from fastapi import File, UploadFile

from app.main import create_app

app = create_app()


@app.post("/bench/floor", include_in_schema=False)
async def floor(file: Annotated[UploadFile, File()]) -> dict[str, str]:
    await file.read()
    return {"model": "floor", "label": "constant"}
