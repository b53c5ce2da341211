"""The mining policy against hand-computed values on small synthetic matrices and 128-d clusters.

The points of the hand-computed cases lie on one axis, so their distances are differences of
positions and every number below can be checked with pencil and paper.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from amari.faces.descriptors import DESCRIPTOR_SIZE, distance_matrix
from amari.mine import policy
from amari.mine.policy import Faces, MinerState, PolicyConfig, Verdict


def on_axis(*positions: float) -> np.ndarray:
    points = np.zeros((len(positions), DESCRIPTOR_SIZE))
    points[:, 0] = positions
    return points


def faces(**positions: float) -> Faces:
    return Faces(tuple(positions), on_axis(*positions.values()))


# Three members at 0, 0.3 and 0.7: distances 0.3, 0.7, 0.4.
# scores = (0+0.3+0.7)/3, (0.3+0+0.4)/3, (0.7+0.4+0)/3 = 0.333333, 0.233333, 0.366667
# avg = 2.8/9 = 0.311111; sd = sqrt((0.022222² + 0.077778² + 0.055556²)/3) = 0.056656
# raw hi = ((4/3)^(1/0.311111) · 0.99³ + 0.25) · 0.056656 + 0.311111 + 0.005
#        = (2.521093 · 0.970299 + 0.25) · 0.056656 + 0.316111 = 0.468867
TRIO = dict(a=0.0, b=0.3, c=0.7)
TRIO_AVG, TRIO_SD, TRIO_RAW_HI = 0.311111, 0.056656, 0.468867


def test_member_scores_include_the_member_itself():
    scores = policy.member_scores(distance_matrix(on_axis(*TRIO.values())))
    assert scores == pytest.approx([1.0 / 3, 0.7 / 3, 1.1 / 3])


def test_upper_bound_formula_by_hand():
    assert policy.upper_bound(TRIO_AVG, TRIO_SD, 3) == pytest.approx(TRIO_RAW_HI, abs=2e-6)
    # avg 0.35, sd 0.1, N 100: (e^(ln(4/3)/0.35) · 0.99^100 + 0.25) · 0.1 + 0.355
    #   = (2.274929 · 0.366032 + 0.25) · 0.1 + 0.355 = 0.463270
    assert policy.upper_bound(0.35, 0.1, 100) == pytest.approx(0.463270, abs=2e-6)


def test_upper_bound_of_identical_members_is_the_average_plus_a_little():
    assert policy.upper_bound(0.0, 0.0, 1) == pytest.approx(0.005)
    assert math.isfinite(policy.upper_bound(1e-6, 1e-9, 5))  # (4/3)^(10^6) must not overflow


def test_first_analysis_uses_the_raw_bound_and_zeroes_mult():
    state, analysis = policy.analyse(MinerState(), faces(**TRIO), PolicyConfig())
    assert analysis.avg == pytest.approx(TRIO_AVG, abs=1e-6)
    assert analysis.sd == pytest.approx(TRIO_SD, abs=1e-6)
    assert state.hi == pytest.approx(TRIO_RAW_HI, abs=2e-6)
    assert state.mult == 0.0 and state.extra == 0.0
    assert analysis.leaving == ()
    assert state.strict is True  # nobody moved out, so the next analysis adjusts the bound
    assert state.n == 4 and state.until_gsa == 4
    assert not state.done  # 3 images are far from the target of 100


def test_strict_analysis_divides_the_margin_by_mult_plus_005_plus_extra():
    # (0.468867 - 0.311111) / (1.0 + 0.05 + 0) + 0.311111 = 0.461355
    state, _ = policy.analyse(MinerState(strict=True), faces(**TRIO), PolicyConfig())
    assert state.hi == pytest.approx(0.461355, abs=2e-6)
    assert state.mult == pytest.approx(1.1)
    # With mult at 0 (after a non-strict analysis) the same rule loosens: margin / 0.05, then the ceiling.
    state, _ = policy.analyse(MinerState(strict=True, mult=0.0), faces(**TRIO), PolicyConfig())
    assert state.hi == 0.5


def test_full_group_adds_extra_tightens_and_can_finish():
    # extra = 1.25; (0.468867 - 0.311111) / (1.0 + 0.05 + 1.25) + 0.311111 = 0.379701
    state, analysis = policy.analyse(MinerState(), faces(**TRIO), PolicyConfig(target=3))
    assert state.extra == pytest.approx(1.25)
    assert state.hi == pytest.approx(0.379701, abs=2e-6)
    assert analysis.leaving == ()  # the worst score, 0.366667, is inside
    assert state.done  # 3 images >= target 3 and average 0.311 <= 0.40
    assert not policy.analyse(MinerState(), faces(**TRIO), PolicyConfig(target=3, stop_average=0.30))[0].done


def test_members_above_the_clamped_bound_leave():
    # Positions 0, 0.1, 0.2, 0.9: scores 0.3, 0.25, 0.25, 0.6; avg 0.35; sd 0.145774;
    # raw hi = (2.274929 · 0.99⁴ + 0.25) · 0.145774 + 0.355 = 0.710001 → ceiling 0.5.
    state, analysis = policy.analyse(MinerState(), faces(a=0.0, b=0.1, c=0.2, far=0.9), PolicyConfig())
    assert analysis.scores == pytest.approx([0.3, 0.25, 0.25, 0.6])
    assert state.hi == 0.5
    assert analysis.leaving == ("far",)
    assert state.strict is False


def test_clamps():
    assert policy.clamp_bound(0.30, 0.35) == pytest.approx(0.3675)  # below the average: 1.05 · avg
    assert policy.clamp_bound(0.70, 0.35) == 0.5
    assert policy.clamp_bound(0.42, 0.35) == 0.42


@pytest.mark.parametrize(
    "group_size, extra, expected",
    [
        (4, 0.0, 4),  # round(1 · 0 · 1.5) = 0 → 4
        (40, 1.25, 9),  # round(round(5) · 1.875) = round(9.375) = 9
        (100, 1.25, 21),  # round(11 · 1.875) = round(20.625) = 21
        (312, 2.5, 100),  # round(32 · 3.75) = 120 → 100
        (20, 1.25, 6),  # round(3 · 1.875) = round(5.625) = 6
        (10, 1.25, 4),  # round(2 · 1.875) = round(3.75) = 4, below 5 → 4
    ],
)
def test_next_batch_size(group_size, extra, expected):
    assert policy.next_batch_size(group_size, extra) == expected


def test_classify_bands_and_edges():
    assert policy.classify(0.40, 0.40, 0.10) is Verdict.SIM
    assert policy.classify(0.45, 0.40, 0.10) is Verdict.ALMOST
    assert policy.classify(0.40 + 0.10, 0.40, 0.10) is Verdict.UNKNOWN  # the band is open at the top
    assert policy.classify(float("nan"), 0.40, 0.10) is Verdict.UNKNOWN


def test_a_batch_judges_candidates_against_the_group_as_it_began():
    group = faces(a=0.0, b=0.2)
    candidates = [("near", on_axis(0.1)[0]), ("almost", on_axis(0.65)[0]), ("far", on_axis(0.9)[0]), ("blank", None)]
    planned = policy.begin_batch(MinerState(), len(group), PolicyConfig())
    assert policy.generates(planned) and planned.batch == 1
    outcome = policy.finish_batch(planned, PolicyConfig(), group, candidates)
    verdicts = {j.key: (j.verdict, j.score, j.reason) for j in outcome.judgements}
    assert verdicts["near"][:2] == (Verdict.SIM, pytest.approx(0.1))
    assert verdicts["almost"][:2] == (Verdict.ALMOST, pytest.approx(0.55))  # 0.5 < 0.55 < 0.6
    assert verdicts["far"][:2] == (Verdict.UNKNOWN, pytest.approx(0.8))
    assert verdicts["blank"][0] is Verdict.UNKNOWN and verdicts["blank"][2] == "no face found"
    assert outcome.bound == 0.5
    assert outcome.state.until_gsa == 2  # 3 - one joined
    assert outcome.analysis is None and outcome.event == "accept"


def test_analysis_runs_when_until_gsa_drops_below_one():
    group = faces(a=0.0, b=0.2)
    candidates = [(f"c{i}", on_axis(0.05 * i)[0]) for i in range(1, 4)]
    outcome = policy.finish_batch(
        policy.begin_batch(MinerState(), 2, PolicyConfig()), PolicyConfig(), group, candidates
    )
    assert outcome.analysis is not None
    assert set(outcome.analysis.keys) == {"a", "b", "c1", "c2", "c3"}
    assert outcome.state.until_gsa == outcome.state.n == 4


def _unproductive(state, almost_size=0):
    planned = policy.begin_batch(state, 5, PolicyConfig())
    far = [("x", on_axis(3.0)[0])]
    return policy.finish_batch(
        planned, PolicyConfig(), faces(a=0, b=0.1, c=0.2, d=0.3, e=0.4), far, almost_size=almost_size
    )


def test_unproductive_batches_wait_then_relax_then_reset():
    state = MinerState(hi=0.40)
    first = _unproductive(state)
    assert first.event == "idle" and first.state.idle == 1 and first.state.hi == 0.40
    second = _unproductive(first.state)
    assert second.event == "relax" and second.state.hi == pytest.approx(0.42) and second.state.fix == 1
    third = _unproductive(second.state)
    assert third.event == "idle" and third.state.hi == pytest.approx(0.42)
    fourth = _unproductive(third.state)
    assert fourth.event == "reset" and fourth.reset
    assert fourth.state.hi == 0.5 and fourth.state.skip_generation == 1 and fourth.state.fix == 2


def test_relax_never_passes_the_ceiling():
    outcome = _unproductive(MinerState(hi=0.49, idle=1))
    assert outcome.event == "relax" and outcome.state.hi == 0.5


def test_a_large_almost_sim_folder_resets_at_once():
    outcome = _unproductive(MinerState(hi=0.40, idle=1), almost_size=401)
    assert outcome.event == "reset" and outcome.reset
    assert _unproductive(MinerState(hi=0.40, idle=1), almost_size=400).event == "relax"


def test_the_two_reset_rounds_retest_the_group_at_052_then_049():
    config = PolicyConfig()
    # After a reset: the almost-sim images are back in the group; positions give scores up to ~0.51.
    group = faces(a=0.0, b=0.1, c=0.2, d=0.3, e=1.0, f=1.2)
    after_reset = MinerState(hi=0.5, fix=2, skip_generation=1)
    planned = policy.begin_batch(after_reset, len(group), config)
    assert not policy.generates(planned)
    round1 = policy.finish_batch(planned, config, group)
    assert round1.analysis.reset_round == 1 and round1.analysis.hi == 0.52
    assert round1.state.reset_phase == 2 and round1.state.skip_generation == 2
    assert round1.state.fix == 0 and round1.state.idle == 0
    scores = dict(zip(round1.analysis.keys, round1.analysis.scores))
    assert set(round1.analysis.leaving) == {k for k, s in scores.items() if s > 0.52}

    remaining = Faces(
        tuple(k for k in group.keys if k not in round1.analysis.leaving),
        on_axis(
            *[dict(a=0.0, b=0.1, c=0.2, d=0.3, e=1.0, f=1.2)[k] for k in group.keys if k not in round1.analysis.leaving]
        ),
    )
    planned = policy.begin_batch(round1.state, len(remaining), config)
    assert not policy.generates(planned)
    round2 = policy.finish_batch(planned, config, remaining)
    assert round2.analysis.reset_round == 2 and round2.state.hi == 0.49
    assert round2.state.reset_phase == 0 and round2.state.skip_generation == 0
    assert policy.generates(policy.begin_batch(round2.state, len(remaining), config))


def test_a_full_group_skips_generation_and_is_analysed():
    config = PolicyConfig(target=4)
    group = faces(a=0.0, b=0.1, c=0.2, d=0.3)
    planned = policy.begin_batch(MinerState(), len(group), config)
    assert planned.skip_generation == 2 and not policy.generates(planned)
    outcome = policy.finish_batch(planned, config, group)
    assert outcome.analysis is not None and outcome.state.skip_generation == 0
    assert outcome.state.extra == pytest.approx(1.25)


def test_bootstrap_takes_the_tightest_pair_within_the_bound():
    pool = faces(p=0.0, q=0.45, r=2.0)
    candidates = [("new", on_axis(0.40)[0])]  # 0.05 from q: the tightest pair
    outcome = policy.finish_batch(
        policy.begin_batch(MinerState(), 0, PolicyConfig()), PolicyConfig(), Faces(), candidates, pool=pool
    )
    assert set(outcome.seeds) == {"q", "new"}
    assert set(outcome.joined) == {"q", "new"}
    assert outcome.state.until_gsa == 1 and "bootstrap" in outcome.events
    assert outcome.judgements[0].verdict is Verdict.UNKNOWN  # judged before the group existed


def test_no_bootstrap_when_every_pair_is_farther_than_the_bound():
    outcome = policy.finish_batch(
        policy.begin_batch(MinerState(), 0, PolicyConfig()),
        PolicyConfig(),
        Faces(),
        [("new", on_axis(0.9)[0])],
        pool=faces(p=0.0, r=2.0),
    )
    assert outcome.seeds == () and outcome.event == "idle"


def test_tightest_pair_picks_the_first_of_equals():
    distances = distance_matrix(on_axis(0.0, 0.2, 0.4))
    assert policy.tightest_pair(distances, 0.5) == (0, 1)
    assert policy.tightest_pair(distances, 0.1) is None
    assert policy.tightest_pair(distances[:1, :1], 0.5) is None


def test_state_round_trips_through_json():
    state = MinerState(
        avg=0.31,
        hi=0.42,
        n=9,
        until_gsa=2,
        idle=1,
        fix=1,
        mult=1.2,
        extra=2.5,
        strict=True,
        reset_phase=2,
        skip_generation=2,
        batch=17,
        done=False,
    )
    assert MinerState.from_json(state.to_json()) == state


def test_policy_config_checks_its_values():
    with pytest.raises(ValueError):
        PolicyConfig(almost_band=0)
    with pytest.raises(ValueError):
        PolicyConfig(target=1)
    with pytest.raises(ValueError):
        PolicyConfig(stop_average=0.6)


def test_simulated_mining_keeps_one_identity_and_stops_at_the_target():
    """Synthetic 128-d clusters: one identity (pairwise ~0.3) among strangers (~1.0 away)."""
    rng = np.random.default_rng(7)
    centre = rng.normal(size=DESCRIPTOR_SIZE)
    centre /= np.linalg.norm(centre)

    def identity():
        return centre + rng.normal(scale=0.3 / math.sqrt(2 * DESCRIPTOR_SIZE), size=DESCRIPTOR_SIZE)

    def stranger():
        v = rng.normal(size=DESCRIPTOR_SIZE)
        return centre + 1.0 * v / np.linalg.norm(v)

    config = PolicyConfig(target=30)
    state = MinerState()
    group = Faces(("seed",), identity()[None])
    kind = {"seed": "identity"}
    counter = 0
    for _ in range(400):
        planned = policy.begin_batch(state, len(group), config)
        candidates = []
        if policy.generates(planned):
            for _ in range(planned.n):
                counter += 1
                who = "identity" if rng.random() < 0.3 else "stranger"
                key = f"img{counter}"
                kind[key] = who
                candidates.append((key, identity() if who == "identity" else stranger()))
        outcome = policy.finish_batch(planned, config, group, candidates)
        vectors = dict(zip(group.keys, group.vectors)) | {k: v for k, v in candidates}
        keep = [k for k in group.keys + outcome.joined if not outcome.analysis or k not in outcome.analysis.leaving]
        group = Faces(tuple(keep), np.array([vectors[k] for k in keep]))
        state = outcome.state
        if policy.finished(state, len(group), config):
            break
    assert policy.finished(state, len(group), config)
    assert len(group) >= 30 and state.avg <= 0.40
    assert {kind[k] for k in group.keys} == {"identity"}


def test_faces_checks_its_shapes():
    with pytest.raises(ValueError):
        Faces(("a", "b"), on_axis(0.0))
    assert len(Faces()) == 0
    assert len(faces(a=0.0).plus(faces(b=1.0))) == 2


def test_finished_respects_a_raised_target():
    done = replace(MinerState(), avg=0.35, done=True)
    assert policy.finished(done, 100, PolicyConfig())
    assert not policy.finished(done, 100, PolicyConfig(target=312))


def test_a_reset_of_an_emptied_group_goes_back_to_generating():
    planned = policy.begin_batch(MinerState(fix=2, skip_generation=1, hi=0.5), 0, PolicyConfig())
    assert not policy.generates(planned)
    outcome = policy.finish_batch(planned, PolicyConfig(), Faces())
    assert outcome.event == "empty-group" and outcome.analysis is None
    assert policy.generates(policy.begin_batch(outcome.state, 0, PolicyConfig()))
