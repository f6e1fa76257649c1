"""Deterministic highlight selection ("story beats") from the analysis and optional transcripts.

1. Candidate segments per source: boundaries at scene cuts, silence edges and sentence ends, short
   pieces merged, long pieces split at their quietest window.
2. Each candidate is scored from loudness, motion, speech density, whether it ends on a sentence end
   and starts on a cut, minus black and silence.
3. The best non-overlapping candidates fill the target duration (the last one trimmed, or a chosen one
   extended, so the total lands on the target).
4. The picks are ordered as a story: hook (best segment), build (chronological), climax (the most
   energetic of the rest), resolution (the chronologically last).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from montage.media.analysis import Analysis
from montage.media.rover import Word

MIN_SEGMENT_S = 1.0
SNAP_TOLERANCE_S = 0.35
ROLES = ("hook", "build", "climax", "resolution")


@dataclass
class Candidate:
    source: int
    start: float
    end: float
    score: float = 0.0
    energy: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Selection:
    source: int
    start: float
    end: float
    role: str
    score: float
    reason: str

    @property
    def duration(self) -> float:
        return self.end - self.start


def max_segment_for(target: float) -> float:
    """Longest single segment: a quarter of the target, between 2 and 8 seconds."""
    return min(8.0, max(2.0, target / 4.0))


def sentence_ends(words: list[Word]) -> list[float]:
    return [w.end for w in words if w.text.rstrip().endswith((".", "!", "?"))]


def boundaries(analysis: Analysis, words: list[Word]) -> list[float]:
    """Sorted cut points: scene cuts, silence edges, sentence ends, start and end."""
    points = {0.0, analysis.duration}
    points.update(analysis.scene_cuts)
    for start, end in analysis.silences:
        # Cut just inside the silence so segments start and end quietly.
        points.add(min(analysis.duration, start + 0.1))
        points.add(max(0.0, end - 0.1))
    points.update(sentence_ends(words))
    ordered = sorted(p for p in points if 0.0 <= p <= analysis.duration)
    deduped: list[float] = []
    for p in ordered:
        if not deduped or p - deduped[-1] >= SNAP_TOLERANCE_S:
            deduped.append(p)
    if deduped[-1] != analysis.duration:
        deduped[-1] = analysis.duration
    return deduped


def _window_slice(analysis: Analysis, start: float, end: float) -> range:
    first = int(start / analysis.window_s)
    last = max(first + 1, int(end / analysis.window_s + 0.999))
    return range(first, min(last, analysis.windows))


def _quietest_split(analysis: Analysis, start: float, end: float, max_len: float) -> float:
    """Split point inside [start+MIN, start+max_len]: the quietest window there."""
    lo, hi = start + MIN_SEGMENT_S, min(end - MIN_SEGMENT_S, start + max_len)
    if hi <= lo:
        return min(end, start + max_len)
    best, best_val = hi, float("inf")
    for w in _window_slice(analysis, lo, hi):
        t = (w + 0.5) * analysis.window_s
        if lo <= t <= hi and analysis.loudness and analysis.loudness[w] < best_val - 3.0:
            best, best_val = t, analysis.loudness[w]
    return best


def candidates(source: int, analysis: Analysis, words: list[Word], max_len: float) -> list[Candidate]:
    points = boundaries(analysis, words)
    pieces: list[tuple[float, float]] = []
    for a, b in zip(points, points[1:], strict=False):
        if pieces and (b - a < MIN_SEGMENT_S or pieces[-1][1] - pieces[-1][0] < MIN_SEGMENT_S):
            if b - pieces[-1][0] <= max_len:
                pieces[-1] = (pieces[-1][0], b)
                continue
        pieces.append((a, b))
    out: list[Candidate] = []
    for a, b in pieces:
        start = a
        while b - start > max_len:
            cut = _quietest_split(analysis, start, b, max_len)
            out.append(Candidate(source, round(start, 3), round(cut, 3)))
            start = cut
        if b - start >= MIN_SEGMENT_S or not out:
            out.append(Candidate(source, round(start, 3), round(b, 3)))
        else:
            out[-1].end = round(b, 3)
    return out


def _ranks(values: list[float]) -> list[float]:
    """Percentile rank of each value (0..1), ties share a rank."""
    if not values:
        return []
    ordered = sorted(values)
    n = len(values)
    return [bisect.bisect_left(ordered, v) / max(1, n - 1) for v in values]


def _overlap(spans: list[tuple[float, float]], start: float, end: float) -> float:
    total = 0.0
    for s, e in spans:
        total += max(0.0, min(e, end) - max(s, start))
    return total


def score(cands: list[Candidate], analysis: Analysis, words: list[Word]) -> None:
    """Fill ``score``, ``energy`` and ``reasons`` of each candidate (same source)."""
    loud_rank = _ranks(analysis.loudness)
    motion_rank = _ranks(analysis.motion)
    ends = sentence_ends(words)
    starts = [w.start for w in words]
    cuts = analysis.scene_cuts
    for c in cands:
        ws = list(_window_slice(analysis, c.start, c.end)) or [0]
        loud = sum(loud_rank[w] for w in ws) / len(ws) if analysis.has_audio and loud_rank else 0.0
        motion = sum(motion_rank[w] for w in ws) / len(ws) if analysis.has_video and motion_rank else 0.0
        n_words = bisect.bisect_left(starts, c.end) - bisect.bisect_left(starts, c.start)
        density = min(1.0, n_words / max(c.duration, 0.1) / 3.0)  # ~3 words/s is dense speech
        ends_sentence = any(abs(e - c.end) <= SNAP_TOLERANCE_S for e in ends)
        on_cut = any(abs(t - c.start) <= SNAP_TOLERANCE_S for t in cuts)
        black = _overlap(analysis.blacks, c.start, c.end) / max(c.duration, 0.1)
        silent = _overlap(analysis.silences, c.start, c.end) / max(c.duration, 0.1) if analysis.has_audio else 0.0
        value = 0.35 * loud + 0.25 * motion + 0.25 * density
        value += 0.10 * ends_sentence + 0.05 * on_cut - 0.6 * black - 0.3 * silent
        c.score = round(value, 4)
        c.energy = round(0.5 * loud + 0.5 * motion, 4)
        reasons = [f"loudness {loud:.2f}", f"motion {motion:.2f}"]
        if words:
            reasons.append(f"speech {density:.2f}")
        if ends_sentence:
            reasons.append("ends a sentence")
        if on_cut:
            reasons.append("starts on a cut")
        if black > 0.2:
            reasons.append(f"black {black:.0%}")
        if silent > 0.2:
            reasons.append(f"silent {silent:.0%}")
        c.reasons = reasons


def pick(cands: list[Candidate], target: float) -> list[Candidate]:
    """Best-scoring non-overlapping candidates whose durations sum to ``target`` (or all there is)."""
    total_available = sum(c.duration for c in cands)
    if total_available <= target:
        return sorted(cands, key=lambda c: (c.source, c.start))
    chosen: list[Candidate] = []
    total = 0.0
    ranked = sorted(cands, key=lambda c: (-c.score, c.source, c.start))
    for c in ranked:
        remaining = target - total
        if remaining < MIN_SEGMENT_S:
            break
        if c.duration <= remaining:
            chosen.append(c)
            total += c.duration
        elif remaining >= MIN_SEGMENT_S and c.duration - remaining >= 0:
            trimmed = Candidate(c.source, c.start, round(c.start + remaining, 3), c.score, c.energy, [*c.reasons])
            trimmed.reasons.append("trimmed to fit")
            chosen.append(trimmed)
            total += trimmed.duration
            break
    remaining = round(target - total, 3)
    if remaining > 0:
        _extend(chosen, cands, remaining)
    return chosen


def _extend(chosen: list[Candidate], cands: list[Candidate], remaining: float, max_len: float = float("inf")) -> None:
    """Lengthen picks into the unused footage next to them until ``remaining`` is used up.

    No pick grows beyond ``max_len``.
    """
    by_source: dict[int, float] = {}
    for c in cands:
        by_source[c.source] = max(by_source.get(c.source, 0.0), c.end)
    for c in sorted(chosen, key=lambda c: -c.score):
        if remaining <= 0:
            return
        limit = by_source[c.source]
        for other in chosen:
            if other is not c and other.source == c.source and other.start >= c.end:
                limit = min(limit, other.start)
        room = min(limit - c.end, max_len - c.duration)
        grow = min(room, remaining)
        if grow > 0:
            c.end = round(c.end + grow, 3)
            remaining = round(remaining - grow, 3)
            c.reasons.append("extended to fill the target")
        if remaining > 0:  # and before it
            floor = 0.0
            for other in chosen:
                if other is not c and other.source == c.source and other.end <= c.start:
                    floor = max(floor, other.end)
            grow = min(c.start - floor, remaining, max_len - c.duration)
            if grow > 0:
                c.start = round(c.start - grow, 3)
                remaining = round(remaining - grow, 3)


def order_story(chosen: list[Candidate], keep_order: bool = False) -> list[Selection]:
    """Hook (best score), build (chronological), climax (most energetic of the rest), resolution (last).

    ``keep_order`` (the whole input is used): label the beats but play everything in its own order.
    """
    if not chosen:
        return []
    chrono = sorted(chosen, key=lambda c: (c.source, c.start))
    if keep_order and len(chrono) > 1:
        climax = max(chrono[1:-1], key=lambda c: (c.energy, c.score), default=None)
        roles = ["hook"] + ["climax" if c is climax else "build" for c in chrono[1:-1]] + ["resolution"]
        return [
            Selection(c.source, c.start, c.end, r, c.score, "; ".join(c.reasons))
            for c, r in zip(chrono, roles, strict=True)
        ]
    if len(chrono) == 1:
        only = chrono[0]
        return [Selection(only.source, only.start, only.end, "hook", only.score, "; ".join(only.reasons))]
    hook = max(chrono, key=lambda c: (c.score, -c.source, -c.start))
    rest = [c for c in chrono if c is not hook]
    resolution = rest[-1]
    middle = rest[:-1]
    ordered: list[tuple[Candidate, str]] = [(hook, "hook")]
    if middle:
        climax = max(middle, key=lambda c: (c.energy, c.score))
        ordered += [(c, "build") for c in middle if c is not climax]
        ordered.append((climax, "climax"))
    ordered.append((resolution, "resolution"))
    return [Selection(c.source, c.start, c.end, role, c.score, "; ".join(c.reasons)) for c, role in ordered]


def select(
    analyses: list[Analysis], target: float, words: list[list[Word]] | None = None
) -> tuple[list[Selection], list[Candidate]]:
    """Score every source, pick segments filling ``target`` seconds, order them as a story.

    Returns the ordered selections and the scored candidates (the LLM selector chooses among these).
    """
    max_len = max_segment_for(target)
    all_cands: list[Candidate] = []
    for i, analysis in enumerate(analyses):
        source_words = words[i] if words and i < len(words) else []
        cands = candidates(i, analysis, source_words, max_len)
        score(cands, analysis, source_words)
        all_cands.extend(cands)
    everything = sum(c.duration for c in all_cands) <= target
    return order_story(pick(all_cands, target), keep_order=everything), all_cands
