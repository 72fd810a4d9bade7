"""Seeded, counterbalanced trial sequences: a Latin square over condition x face, each new
participant given the list with the fewest completed sessions (round robin among equals).

Conditions are the methods present in the stimuli (registry order) plus `real` last. With K
conditions there are K lists; in list l the i-th main face (faces ordered by expression, then id)
is shown under condition (i + l) mod K. So within a list every face appears once and every
condition equally often, per expression too when each expression has a multiple of K faces;
across K consecutive participants every (face, condition) stimulus is seen exactly once.
Practice trials come first; catch trials (unmasked, unmistakable faces) are spread in the rest.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from model.config import EXPRESSIONS
from model.methods.registry import ordered


class DesignError(ValueError):
    """The stimulus set cannot give a valid design (missing conditions, shared faces, ...)."""


@dataclass(frozen=True)
class StimulusRef:
    stimulus_id: str
    image_id: str
    expression: str
    method: str  # a METHODS key or `real`
    role: str = "main"  # main | practice | catch


@dataclass(frozen=True)
class PlannedTrial:
    trial_index: int  # position in the participant's sequence, from 0
    stimulus_id: str
    image_id: str
    is_practice: bool
    is_catch: bool


@dataclass(frozen=True)
class DesignConfig:
    n_practice: int | None = None  # None: every practice stimulus
    n_catch: int | None = None  # None: every catch stimulus


@dataclass
class BalanceReport:
    conditions: tuple[str, ...]
    faces_per_expression: dict[str, int]
    trials_per_list: int
    balanced: bool
    problems: list[str] = field(default_factory=list)


def condition_order(methods: Iterable[str]) -> tuple[str, ...]:
    """The registry's display order (model.methods.registry.ordered): its methods, then unknown
    keys alphabetically (tests), then `real` last."""
    return tuple(ordered(methods))


def _expression_rank(expression: str) -> int:
    return EXPRESSIONS.index(expression) if expression in EXPRESSIONS else len(EXPRESSIONS)


def main_faces(stimuli: Sequence[StimulusRef]) -> list[tuple[str, str]]:
    """(image_id, expression) of every main face, expression-major (vocabulary order), then id."""
    faces = {(s.image_id, s.expression) for s in stimuli if s.role == "main"}
    return sorted(faces, key=lambda f: (_expression_rank(f[1]), f[1], f[0]))


def validate(stimuli: Sequence[StimulusRef]) -> tuple[str, ...]:
    """Check the set can be counterbalanced; returns the conditions. Raises DesignError."""
    main = [s for s in stimuli if s.role == "main"]
    if not main:
        raise DesignError("no main stimuli: build the stimuli first (unmask study build)")
    conditions = condition_order(s.method for s in main)
    by_face: dict[str, set[str]] = defaultdict(set)
    expression_of: dict[str, set[str]] = defaultdict(set)
    for s in main:
        by_face[s.image_id].add(s.method)
        expression_of[s.image_id].add(s.expression)
    for face, methods in sorted(by_face.items()):
        if methods != set(conditions):
            missing = ", ".join(sorted(set(conditions) - methods))
            raise DesignError(f"face {face!r} lacks conditions: {missing}")
        if len(expression_of[face]) != 1:
            raise DesignError(f"face {face!r} has several expressions: {expression_of[face]}")
    seen: dict[str, str] = {}
    for s in stimuli:
        if s.role == "main":
            continue
        if s.image_id in by_face:
            raise DesignError(f"{s.role} face {s.image_id!r} is also a main face")
        if s.image_id in seen:
            raise DesignError(f"face {s.image_id!r} has two practice/catch stimuli")
        seen[s.image_id] = s.role
    return conditions


def latin_square(stimuli: Sequence[StimulusRef]) -> list[list[StimulusRef]]:
    """The K lists (K = number of conditions), each a list of main stimuli, one per face."""
    conditions = validate(stimuli)
    index = {(s.image_id, s.method): s for s in stimuli if s.role == "main"}
    faces = main_faces(stimuli)
    k = len(conditions)
    return [
        [index[(face, conditions[(i + lst) % k])] for i, (face, _) in enumerate(faces)]
        for lst in range(k)
    ]


def n_lists(stimuli: Sequence[StimulusRef]) -> int:
    return len(validate(stimuli))


def list_for_ordinal(ordinal: int, stimuli: Sequence[StimulusRef]) -> int:
    """Round robin: the participant registered n-th (from 0) gets list n mod K."""
    return ordinal % n_lists(stimuli)


def next_list(
    ordinal: int,
    stimuli: Sequence[StimulusRef],
    completed: Mapping[int, int],
    in_progress: Mapping[int, int],
) -> int:
    """The list of the participant registered `ordinal`-th: the one with the fewest completed
    sessions, then the fewest in progress, then round robin (`list_for_ordinal`). So a session
    abandoned midway does not hold its list: the lists fill evenly with completed sessions (as a
    "balanced" allocation does on online-study platforms), and with no one quitting this is the
    plain round robin."""
    k = n_lists(stimuli)
    return min(
        range(k),
        key=lambda lst: (completed.get(lst, 0), in_progress.get(lst, 0), (lst - ordinal) % k),
    )


def _spread_positions(n_items: int, n_insert: int, rng: random.Random) -> list[int]:
    """Positions in the final sequence of `n_insert` items spread over n_items + n_insert slots.

    One insert falls in each of n_insert equal segments, never first (the first trial after
    practice should be a real one).
    """
    total = n_items + n_insert
    positions = []
    for j in range(n_insert):
        lo = max(1, (j * total) // n_insert)
        hi = max(lo, ((j + 1) * total) // n_insert - 1)
        positions.append(rng.randint(lo, hi))
    # Distinct and increasing whatever the rounding.
    out: list[int] = []
    for p in sorted(positions):
        p = max(p, out[-1] + 1 if out else 1)
        out.append(min(p, total - 1))
    return out


def participant_sequence(
    stimuli: Sequence[StimulusRef],
    list_index: int,
    seed: int,
    config: DesignConfig = DesignConfig(),
) -> list[PlannedTrial]:
    """Practice first, then the list's main trials shuffled with catch trials spread among them."""
    lists = latin_square(stimuli)
    rng = random.Random(seed)
    practice = sorted((s for s in stimuli if s.role == "practice"), key=lambda s: s.stimulus_id)
    catch = sorted((s for s in stimuli if s.role == "catch"), key=lambda s: s.stimulus_id)
    rng.shuffle(practice)
    rng.shuffle(catch)
    if config.n_practice is not None:
        practice = practice[: config.n_practice]
    if config.n_catch is not None:
        catch = catch[: config.n_catch]

    main = list(lists[list_index % len(lists)])
    rng.shuffle(main)
    sequence: list[tuple[StimulusRef, bool]] = [(s, False) for s in main]
    for pos, s in zip(_spread_positions(len(main), len(catch), rng), catch, strict=True):
        sequence.insert(pos, (s, True))

    planned = [(s, True, False) for s in practice] + [(s, False, c) for s, c in sequence]
    return [
        PlannedTrial(i, s.stimulus_id, s.image_id, is_practice, is_catch)
        for i, (s, is_practice, is_catch) in enumerate(planned)
    ]


def balance_report(stimuli: Sequence[StimulusRef]) -> BalanceReport:
    """How well the lists balance conditions per expression (exact when faces per expression % K == 0)."""
    conditions = validate(stimuli)
    k = len(conditions)
    faces = main_faces(stimuli)
    per_expr = Counter(e for _, e in faces)
    problems = [
        f"{e}: {n} faces is not a multiple of {k} conditions; counts differ by one"
        for e, n in per_expr.items()
        if n % k
    ]
    return BalanceReport(conditions, dict(per_expr), len(faces), not problems, problems)
