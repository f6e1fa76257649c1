"""The Montage media pipeline: probe, analyse, select highlights, render, export timelines.

Importing this package is light; the heavy libraries (PyAV, ffmpeg-python, OpenTimelineIO, httpx)
are imported inside the functions that use them.
"""
