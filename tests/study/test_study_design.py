"""Counterbalancing: every participant sees each condition equally often, per expression too,
never a face twice; stimuli are spread evenly over participants; practice first; seeded."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from model.config import EXPRESSIONS, REAL
from study import design
from study.design import DesignError, StimulusRef


def stimuli(methods, per_expression, n_practice=2, n_catch=2, expressions=EXPRESSIONS):
    conditions = [*methods, REAL]
    out = [
        StimulusRef(f"{e}{j}-{m}", f"{e}{j}", e, m)
        for e in expressions
        for j in range(per_expression)
        for m in conditions
    ]
    out += [
        StimulusRef(f"p{j}", f"p{j}", expressions[j % len(expressions)], conditions[0], "practice")
        for j in range(n_practice)
    ]
    out += [StimulusRef(f"c{j}", f"c{j}", "happy", REAL, "catch") for j in range(n_catch)]
    return out


def check_participant(stims, plan):
    by_id = {s.stimulus_id: s for s in stims}
    faces = [t.image_id for t in plan]
    assert len(faces) == len(set(faces)), "a face was shown twice"
    assert [t.trial_index for t in plan] == list(range(len(plan)))
    practice = [t for t in plan if t.is_practice]
    assert [t.trial_index for t in practice] == list(range(len(practice))), "practice not first"
    assert all(by_id[t.stimulus_id].role == "practice" for t in practice)
    assert all(by_id[t.stimulus_id].role == "catch" for t in plan if t.is_catch)
    main = [by_id[t.stimulus_id] for t in plan if not (t.is_practice or t.is_catch)]
    return main


@pytest.mark.parametrize("n_participants", range(1, 14))
@pytest.mark.parametrize(
    "methods,per_expression",
    [(("telea", "unmask"), 3), (("telea", "pix2pix", "dilated_se", "landmark", "unmask"), 6)],
)
def test_balanced_for_any_number_of_participants(n_participants, methods, per_expression):
    stims = stimuli(methods, per_expression)
    k = len(methods) + 1
    exposures: Counter[str] = Counter()
    for p in range(n_participants):
        lst = design.list_for_ordinal(p, stims)
        assert lst == p % k  # round robin
        plan = design.participant_sequence(stims, lst, seed=1000 + p)
        main = check_participant(stims, plan)
        assert len(main) == len(EXPRESSIONS) * per_expression  # every main face once
        per_condition = Counter(s.method for s in main)
        assert set(per_condition) == {*methods, REAL}
        assert len(set(per_condition.values())) == 1, per_condition
        cells = Counter((s.method, s.expression) for s in main)
        assert len(cells) == k * len(EXPRESSIONS)
        assert set(cells.values()) == {per_expression // k}, cells
        assert sum(t.is_catch for t in plan) == 2 and sum(t.is_practice for t in plan) == 2
        exposures.update(s.stimulus_id for s in main)
    # Each stimulus seen floor(P/K) or ceil(P/K) times: the Latin square covers all cells.
    all_main = [s.stimulus_id for s in stims if s.role == "main"]
    counts = [exposures[s] for s in all_main]
    assert max(counts) - min(counts) <= 1
    if n_participants % k == 0:
        assert set(counts) == {n_participants // k}


def test_next_list_fills_lists_with_completed_sessions():
    stims = stimuli(("telea", "unmask"), 3)  # 3 lists
    none: Counter[int] = Counter()
    # No one quit: the plain round robin.
    assert [design.next_list(p, stims, none, none) for p in range(5)] == [0, 1, 2, 0, 1]
    # Lists 0, 1, 2 were taken by sessions abandoned midway, list 0 also has a completed one:
    # the next participants get the lists with no completed session first.
    completed, in_progress = Counter({0: 1}), Counter({0: 1, 1: 1, 2: 1})
    assert design.next_list(4, stims, completed, in_progress) == 1
    in_progress[1] += 1
    assert design.next_list(5, stims, completed, in_progress) == 2
    # Equal completions: fewest in progress, then the round robin.
    assert design.next_list(6, stims, Counter({0: 2, 1: 2, 2: 2}), Counter({1: 1})) == 0
    assert design.next_list(7, stims, Counter({0: 2, 1: 2, 2: 2}), Counter()) == 1


def test_property_random_designs():
    """Random condition counts, face counts and seeds: the invariants hold whatever the sizes."""
    rng = random.Random(7)
    pool = ["telea", "pix2pix", "pix2pix_mask", "dilated_se", "landmark", "unmask"]
    for _ in range(40):
        methods = rng.sample(pool, rng.randint(1, len(pool)))
        k = len(methods) + 1
        per_expression = k * rng.randint(1, 3)
        stims = stimuli(methods, per_expression, rng.randint(0, 4), rng.randint(0, 5))
        n = rng.randint(1, 3 * k)
        seen: Counter[str] = Counter()
        for p in range(n):
            plan = design.participant_sequence(
                stims, design.list_for_ordinal(p, stims), rng.getrandbits(31)
            )
            main = check_participant(stims, plan)
            assert len(set(Counter(s.method for s in main).values())) == 1
            assert len(set(Counter((s.method, s.expression) for s in main).values())) == 1
            seen.update(s.stimulus_id for s in main)
        counts = [seen[s.stimulus_id] for s in stims if s.role == "main"]
        assert max(counts) - min(counts) <= 1


def test_unbalanced_face_counts_stay_within_one():
    # 4 faces per expression, 3 conditions: not a multiple; counts differ by at most one.
    stims = stimuli(("telea", "unmask"), 4)
    report = design.balance_report(stims)
    assert not report.balanced and report.problems
    for lst in range(3):
        main = check_participant(stims, design.participant_sequence(stims, lst, seed=lst))
        counts = Counter(s.method for s in main).values()
        assert max(counts) - min(counts) <= 1


def test_conditions_in_registry_order_real_last():
    stims = stimuli(("unmask", "telea", "pix2pix"), 4)
    assert design.validate(stims) == ("telea", "pix2pix", "unmask", REAL)


def test_seeded_and_shuffled():
    stims = stimuli(("telea", "unmask"), 6)
    a = design.participant_sequence(stims, 0, seed=42)
    assert a == design.participant_sequence(stims, 0, seed=42)
    b = design.participant_sequence(stims, 0, seed=43)
    assert [t.stimulus_id for t in a] != [t.stimulus_id for t in b]
    assert sorted(t.stimulus_id for t in a) == sorted(t.stimulus_id for t in b)


def test_catch_trials_spread_never_first_after_practice():
    stims = stimuli(("telea", "unmask"), 6, n_practice=3, n_catch=4)
    for seed in range(30):
        plan = design.participant_sequence(stims, seed % 3, seed)
        main_part = [t for t in plan if not t.is_practice]
        assert not main_part[0].is_catch
        positions = [i for i, t in enumerate(main_part) if t.is_catch]
        assert len(positions) == 4
        # One catch in each quarter of the sequence (quarters as floor(j * n / 4)).
        bounds = [j * len(main_part) // 4 for j in range(5)]
        for j, p in enumerate(positions):
            assert bounds[j] <= p < bounds[j + 1]


def test_invalid_sets_are_refused():
    stims = stimuli(("telea",), 2)
    with pytest.raises(DesignError, match="lacks conditions"):
        design.validate([s for s in stims if s.stimulus_id != "happy0-telea"])
    clash = StimulusRef("x", "happy0", "happy", REAL, "catch")
    with pytest.raises(DesignError, match="also a main face"):
        design.validate([*stims, clash])
    with pytest.raises(DesignError, match="no main stimuli"):
        design.validate([s for s in stims if s.role != "main"])
