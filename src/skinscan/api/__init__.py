"""The prediction service: a FastAPI app over the engine, its settings, and the web client it serves."""
