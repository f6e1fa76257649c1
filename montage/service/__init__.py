"""The Montage HTTP service: ``create_app(settings)`` builds the FastAPI app (nothing runs at import)."""
