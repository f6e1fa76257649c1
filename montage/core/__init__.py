"""The ground floor the app and the toolkit both import: stdlib only, light to import.

One concept, one place: files (atomic writes, sha256, canonical JSON), processes, git and
temporary worktrees, loopback servers, flags, cgroups and the ffmpeg locator each live here once.
Nothing in this package imports the database, pydantic or the media stack.
"""
