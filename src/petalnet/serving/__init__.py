"""A model behind HTTP: the FastAPI app with its web page, and a standard-library client."""
