"""The service app plus one route for the benchmark's HTTP floor: it reads the upload exactly as
/predict does (the same reader, the same limits) and returns a constant body, ready-serialised as
/predict's is, with no decoding and no inference."""

from __future__ import annotations

from fastapi import Request, Response

from app.main import create_app
from app.routers.deps import service_of
from app.routers.uploads import read_single

app = create_app()
CONSTANT = b'{"model":"floor","label":"constant"}'


@app.post("/bench/floor", include_in_schema=False)
async def floor(request: Request) -> Response:
    service = service_of(request)
    image = await read_single(request, service.settings, service.json_parser)
    if image.error:
        raise image.error
    return Response(CONSTANT, media_type="application/json")
