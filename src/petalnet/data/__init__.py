"""Photos on disk: open one photo, find class folders, check, split, download flower_photos."""
