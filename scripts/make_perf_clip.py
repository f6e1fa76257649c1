#!/usr/bin/env python3
"""Build the perf guard's reference input clip and print its path, sha256 and frame count.

    python scripts/make_perf_clip.py [-o DIR]        # default DIR: var/perf

The clip is 12 s of 1280x720 at 30 fps (360 frames): ffmpeg's testsrc2 pattern with temporal noise
(so the encoder has real work) and a beeping 440 Hz sine, encoded with fixed settings (x264
veryfast CRF 20, GOP 60, 2 threads, AAC 128k, bit-exact flags, no metadata). The same ffmpeg build
gives the same bytes; the sha256 is part of the perf guard's environment fingerprint, so a
different build (different bytes) makes the guard compare by an A/B run instead of the stored
baseline. The recipe lives in montage/ops/perf/workload.py (``clip_argv``); this script and
``python -m montage.ops.perf make-clip`` run the same code, and the guard builds the clip itself
when it is missing.
"""

from __future__ import annotations

import sys

from montage.ops.perf.cli import main

if __name__ == "__main__":
    sys.exit(main(["make-clip", *sys.argv[1:]]))
