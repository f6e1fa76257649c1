"""The deterministic highlight scorer on hand-made analyses."""

from __future__ import annotations

from montage.media.analysis import Analysis
from montage.media.rover import Word
from montage.media.story_beats import ROLES, boundaries, candidates, max_segment_for, pick, score, select


def _analysis(duration: float = 60.0, loud_from: float = 30.0) -> Analysis:
    n = int(duration / 0.5)
    loud = [-14.0 if i * 0.5 >= loud_from else -30.0 for i in range(n)]
    motion = [float(i % 7) for i in range(n)]
    return Analysis(
        duration=duration, window_s=0.5, has_audio=True, has_video=True, loudness=loud, motion=motion,
        scene=[0.0] * n, motion_x=[0.5] * n, scene_cuts=[10.0, 20.0, 35.0, 47.0],
        silences=[(24.0, 26.0)], blacks=[(0.0, 1.5)],
    )  # fmt: skip


def test_selection_fills_target_without_overlap_in_story_order() -> None:
    analysis = _analysis()
    chosen, cands = select([analysis], 20.0)
    total = sum(s.duration for s in chosen)
    assert abs(total - 20.0) < 0.01
    spans = sorted((s.start, s.end) for s in chosen)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    roles = [s.role for s in chosen]
    assert roles[0] == "hook" and roles[-1] == "resolution" and roles.count("climax") == 1
    assert set(roles) <= set(ROLES)
    assert all(s.duration <= max_segment_for(20.0) + 1e-6 for s in chosen)
    # the loud second half wins most of the time
    assert sum(s.duration for s in chosen if s.start >= 30.0) > 12.0
    assert select([analysis], 20.0)[0] == chosen  # deterministic


def test_boundaries_snap_to_cuts_silence_and_sentences() -> None:
    words = [Word("Hello", 40.0, 40.4), Word("world.", 40.5, 41.0)]
    points = boundaries(_analysis(), words)
    assert {10.0, 20.0, 35.0, 47.0, 41.0} <= set(points)
    assert 24.1 in points and 25.9 in points  # just inside the silence
    cands = candidates(0, _analysis(), words, max_len=5.0)
    assert all(1.0 <= c.duration <= 5.0 + 1e-6 for c in cands)
    assert abs(sum(c.duration for c in cands) - 60.0) < 1e-6


def test_speech_and_black_affect_score() -> None:
    analysis = _analysis(loud_from=999)
    words = [Word(f"w{i}.", 12.0 + i * 0.3, 12.2 + i * 0.3) for i in range(20)]
    cands = candidates(0, analysis, words, max_len=5.0)
    score(cands, analysis, words)
    speechy = max(cands, key=lambda c: c.score)
    assert 10.0 <= speechy.start < 20.0 and any("speech" in r for r in speechy.reasons)
    black = next(c for c in cands if c.start == 0.0)
    assert "black" in " ".join(black.reasons) and black.score < speechy.score


def test_short_input_uses_everything() -> None:
    chosen, _ = select([_analysis(duration=8.0)], 30.0)
    assert abs(sum(s.duration for s in chosen) - 8.0) < 1e-6
    assert [s.start for s in chosen] == sorted(s.start for s in chosen)  # played in its own order
    assert chosen[0].role == "hook" and chosen[-1].role == "resolution"


def test_multiple_sources_and_exact_fill() -> None:
    chosen, _ = select([_analysis(duration=20.0), _analysis(duration=20.0)], 33.3)
    assert abs(sum(s.duration for s in chosen) - 33.3) < 0.01
    assert {s.source for s in chosen} == {0, 1}


def test_pick_extends_when_remaining_is_too_short_to_add() -> None:
    analysis = _analysis(duration=30.0)
    cands = candidates(0, analysis, [], max_len=4.0)
    score(cands, analysis, [])
    for target in (4.5, 7.3, 12.9):
        assert abs(sum(c.duration for c in pick(cands, target)) - target) < 0.01
