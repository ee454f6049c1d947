"""`python -m app`: serve the models over HTTP (see app/server.py)."""

from app.server import main

main()
