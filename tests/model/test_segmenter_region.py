"""The final-region rule (model.segmenter.final_region / find_mask_region) on the aligned
astronaut's landmarks: only the lower face, one closed piece across the face's midline, reaching
the photo's edge; and "no mask" for small or unsure regions, or ones outside the photo."""

import numpy as np
import pytest

from model.segmenter import (
    NO_MASK_MESSAGE,
    final_region,
    find_mask_region,
    lower_face_zone,
    midline_band,
)


@pytest.fixture(scope="module")
def aligned(astronaut):
    from model.faces import find_and_align

    return find_and_align(astronaut)


def _mask_prob(aligned, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    from model.masks import apply_mask

    seg = apply_mask(aligned.image, aligned.landmarks, seed=seed, style="surgical").seg
    return seg.astype(np.float32) * 0.95, seg


def test_zone_is_the_lower_face(aligned):
    zone = lower_face_zone(aligned.landmarks)
    lm = aligned.landmarks
    eyes_bottom = int(np.ceil(lm[36:48, 1].max()))
    assert not zone[: int(lm[36:48, 1].min())].any()  # nothing at or above the eyes
    assert zone[int(lm[33, 1]), int(lm[33, 0])] and zone[int(lm[8, 1]) + 5, int(lm[8, 0])]
    assert not zone[eyes_bottom + 10, 2] and not zone[eyes_bottom + 10, 253]  # background
    for i in (36, 39, 42, 45):  # the eye corners themselves
        assert not zone[int(lm[i, 1]), int(lm[i, 0])]


def test_rule_keeps_the_mask_and_drops_what_is_not_on_the_lower_face(aligned):
    prob, seg = _mask_prob(aligned)
    noisy = prob.copy()
    noisy[10:40, 100:150] = 0.9  # on the hair
    noisy[150:200, 0:20] = 0.9  # on the background beside the head
    ys, xs = np.nonzero(seg)
    cy, cx = int(ys.mean()), int(xs.mean())
    noisy[cy - 4 : cy + 4, cx - 4 : cx + 4] = 0.1  # a printed logo the network missed
    region = final_region(noisy, aligned.landmarks)
    assert not region[:40].any() and not region[:, :20].any()
    assert region[cy - 4 : cy + 4, cx - 4 : cx + 4].all()  # the hole in the fabric closed
    inter, union = (region & seg).sum(), (region | seg).sum()
    assert inter / union > 0.95


def test_rule_reaches_the_photo_edge(aligned):
    prob, seg = _mask_prob(aligned)
    rows = np.nonzero(seg.any(1))[0]
    edge = rows.max() - 20  # the photo ends 20 px above the mask's bottom
    inside = np.zeros_like(seg)
    inside[:edge] = True
    short = prob.copy()
    short[edge - 10 :] = 0  # the prediction stops 10 px short of the edge
    region = final_region(short, aligned.landmarks, inside)
    cols = np.nonzero(seg[edge - 1])[0]
    mid = cols[len(cols) // 4 : 3 * len(cols) // 4]
    assert region[edge - 10 : edge, mid].all()  # the band between hole and edge is in the hole
    assert region[edge : edge + 3, mid].all()  # and a little past it (the feather)
    without = final_region(short, aligned.landmarks)
    assert not without[edge - 5 : edge, mid].any()  # without the edge, nothing is invented


def test_colour_tells_a_mask_running_off_the_edge_from_one_stopping_short(aligned):
    """With the photo, the band added between the region and the photo's edge stays in the hole
    where it shows the mask (the network stopped short of the edge) and leaves it where it shows
    the chin (the mask itself stops short: synthetic faces cut at the chin, real photo copy 37)."""
    from model.faces import OUTSIDE_FILL
    from model.masks import apply_mask

    lm = aligned.landmarks
    masked = apply_mask(aligned.image, lm, seed=3, style="cloth")
    seg = masked.seg
    rows = np.nonzero(seg.any(1))[0]
    edge = rows.max() - 20
    inside = np.zeros_like(seg)
    inside[:edge] = True
    photo = masked.image.copy()
    photo[edge:] = OUTSIDE_FILL  # the aligned square past the photo's bottom edge
    short = np.where(seg, 0.95, 0.02).astype(np.float32)
    short[edge - 10 :] = 0
    cols = np.nonzero(seg[edge - 1])[0]
    mid = cols[len(cols) // 4 : 3 * len(cols) // 4]
    runs_off = final_region(short, lm, inside, photo)
    assert runs_off[edge - 10 : edge, mid].mean() > 0.95  # the mask's band: in the hole
    stops = photo.copy()  # the mask ends 10 px above the edge; a chin's skin below it
    noise = np.random.default_rng(0).normal(0, 6, (10, stops.shape[1], 3))
    stops[edge - 10 : edge] = np.clip(np.array([196, 148, 124]) + noise, 0, 255).astype(np.uint8)
    stops_short = final_region(short, lm, inside, stops)
    assert stops_short[edge - 10 : edge, mid].mean() < 0.2  # the chin: not in the hole
    assert final_region(short, lm, inside)[edge - 10 : edge, mid].all()  # blind: in the hole


def test_edge_extension_goes_straight_to_the_edge_not_sideways(aligned):
    """Where the photo's edge cuts the face, only the band right under the mask joins the hole:
    beside it (a collar, a shirt where the mask curves up) nothing is added."""
    prob, seg = _mask_prob(aligned)
    rows = np.nonzero(seg.any(1))[0]
    edge = rows.max() - 20
    inside = np.zeros_like(seg)
    inside[:edge] = True
    cols = np.nonzero(seg[edge - 1])[0]
    c0, c1 = cols[len(cols) // 3], cols[2 * len(cols) // 3]
    short = prob.copy()
    short[edge - 10 :] = 0  # the middle third stops 10 px short of the edge
    short[edge - 30 :, :c0] = 0  # the sides 30 px short: a shirt between mask and edge there
    short[edge - 30 :, c1 + 1 :] = 0
    region = final_region(short, aligned.landmarks, inside)
    assert region[edge - 10 : edge, c0 + 6 : c1 - 5].all()  # under the mask: in the hole
    assert not region[edge - 6 : edge, c1 + 8 : c1 + 14].any()  # beside it: not
    assert not region[edge - 6 : edge, c0 - 13 : c0 - 7].any()


class _Fixed:
    """A segmenter that answers a fixed probability map (the rule is what is tested here)."""

    def __init__(self, prob: np.ndarray):
        self.prob = prob

    def probability(self, image: np.ndarray) -> np.ndarray:
        return self.prob


def test_no_mask_when_small_or_unsure(aligned):
    prob, seg = _mask_prob(aligned)
    found = find_mask_region(_Fixed(prob), aligned.image, aligned.landmarks)
    assert found.found and found.message is None and found.area > 0.1
    tiny = np.zeros_like(prob)
    tiny[180:186, 120:130] = 0.99  # 60 px: under 1 % of the face
    for p in (tiny, prob * 0.55 / 0.95, np.zeros_like(prob)):  # small; unsure (0.55); nothing
        r = find_mask_region(_Fixed(p), aligned.image, aligned.landmarks)
        assert not r.found and not r.mask.any() and r.message == NO_MASK_MESSAGE


def test_a_piece_beside_the_midline_is_no_mask(aligned):
    """A blob only beside the face's midline (on the collar or shoulder, a hand at the cheek) is
    not a mask; a mask pulled under the chin still crosses the midline and is kept."""
    lm = aligned.landmarks
    band = midline_band(lm)
    assert band[int(lm[33, 1]), int(lm[33, 0])] and band[int(lm[8, 1]) + 10, int(lm[8, 0])]
    assert not band[int(lm[33, 1]), int(lm[3, 0])] and not band[int(lm[33, 1]), int(lm[13, 0])]
    side = np.zeros((256, 256), np.float32)
    x = int(lm[12, 0])  # the jaw's right side, down to the collar
    side[int(lm[12, 1]) : int(lm[8, 1]) + 20, x - 12 : x + 12] = 0.95
    assert not final_region(side, lm).any()
    assert not find_mask_region(_Fixed(side), aligned.image, lm).found
    prob, seg = _mask_prob(aligned)
    both = np.maximum(prob, side * ~_grown(seg, 6))  # the mask, and apart from it the blob
    region = final_region(both, lm)
    assert (region & seg).sum() > 0.95 * seg.sum()
    assert (region & (side > 0) & ~_grown(seg, 6)).sum() == 0
    chin = np.zeros_like(prob)
    chin[int(lm[8, 1]) - 5 : int(lm[8, 1]) + 25, int(lm[6, 0]) : int(lm[10, 0])] = 0.95
    worn = aligned.image.copy()  # and the photo shows a light blue mask there
    noise = np.random.default_rng(0).normal(0, 6, (int((chin > 0).sum()), 3))
    worn[chin > 0] = np.clip(np.array([150, 190, 220]) + noise, 0, 255).astype(np.uint8)
    assert find_mask_region(_Fixed(chin), worn, lm).found  # under the chin: a mask


def test_what_lies_outside_the_photo_is_never_a_mask(aligned):
    """A face cut by the photo's bottom edge (the flat fill below it): a confident blob on the fill
    alone is "no mask", told by `inside` or, without it (a dataset's faces), by the fill itself."""
    from model.faces import OUTSIDE_FILL, inside_from_fill

    lm = aligned.landmarks
    edge = int(lm[8, 1]) + 2  # the photo ends just under the chin
    face = aligned.image.copy()
    face[edge:] = OUTSIDE_FILL
    inside = np.zeros((256, 256), bool)
    inside[:edge] = True
    assert (inside_from_fill(face) == inside).all()
    assert inside_from_fill(aligned.image).all()  # a whole photo: nothing outside
    blob = np.zeros((256, 256), np.float32)
    blob[edge + 4 : edge + 30, int(lm[5, 0]) : int(lm[11, 0])] = 0.95  # on the grey band
    assert final_region(blob, lm).any()  # the network's blob is in the zone
    for given in (inside, None):
        r = find_mask_region(_Fixed(blob), face, lm, given)
        assert not r.found and r.area == 0 and r.message == NO_MASK_MESSAGE
    prob, seg = _mask_prob(aligned)
    r = find_mask_region(_Fixed(np.maximum(prob, blob)), face, lm)  # a real mask above it: found
    assert r.found and r.area > 0.1


def _grown(mask: np.ndarray, px: int) -> np.ndarray:
    import cv2

    k = 2 * px + 1
    return cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)) > 0


def test_a_strap_hanging_from_the_mask_is_cut_off(aligned):
    """A thin confident arm joined to the mask (a strap or lanyard hanging beside the jaw, real
    photo 0417) is not inpainted; the mask itself stays whole, corners included."""
    prob, seg = _mask_prob(aligned)
    lm = aligned.landmarks
    strap = np.zeros_like(prob)
    x, top = int(lm[11, 0]), int(lm[11, 1])
    strap[top : top + 60, x - 8 : x + 9] = 0.95  # 17 px wide, from the mask's side downwards
    region = final_region(np.maximum(prob, strap), lm)
    below = strap.astype(bool) & ~_grown(seg, 12)  # past the fillet where it joins the mask
    assert below.sum() > 100
    assert (region & below).sum() < 0.1 * below.sum()
    plain = final_region(prob, lm)
    assert (region & seg).sum() >= 0.99 * (plain & seg).sum()


def test_a_wall_beside_the_mask_is_told_apart_by_its_colour(aligned):
    """Past the jaw line the network may say "mask" on a pale wall beside the face (real photo
    0999, p 0.9 there): with the photo given, colour (GrabCut) leaves the wall out of the hole and
    keeps the mask's own pixels past the jaw line."""
    from model.masks import apply_mask
    from model.segmenter import CORE_REACH

    lm = aligned.landmarks
    masked = apply_mask(aligned.image, lm, seed=3, style="cloth")
    seg = masked.seg
    zone, core = (
        lower_face_zone(lm),
        lower_face_zone(lm, side_reach=CORE_REACH, chin_reach=CORE_REACH),
    )
    rows = np.nonzero(seg.any(1))[0]
    painted = np.zeros_like(seg)
    painted[rows.min() : rows.min() + 40, 128:] = True
    painted &= ~core & ~seg  # a pale wall right of the face, in the zone's margin and past it
    wall = painted & zone
    assert wall.sum() > 150
    image = masked.image.copy()
    noise = np.random.default_rng(0).normal(0, 6, (int(painted.sum()), 3))  # a camera's grain
    image[painted] = np.clip(np.array([232, 228, 218]) + noise, 0, 255).astype(np.uint8)
    prob = np.where(seg | wall, 0.9, 0.02).astype(np.float32)
    blind = final_region(prob, lm)
    assert (blind & wall).sum() > 0.8 * wall.sum()  # without the photo the wall is in the hole
    region = final_region(prob, lm, image=image)
    assert (region & wall).sum() < 0.1 * wall.sum()
    kept = seg & zone & ~core  # the mask past the jaw line
    assert kept.sum() > 150
    assert (region & kept).sum() > 0.9 * (blind & kept).sum()
    assert (region & seg & core).sum() == (blind & seg & core).sum()  # the core is untouched


def test_colour_shapes_the_hole_but_does_not_decide_whether_there_is_one(aligned):
    """An unsure region (mean p under MIN_CONFIDENCE) stays "no mask" even where the colour step
    would trim its least sure pixels (a wall beside the jaw) and so lift the mean over the limit
    (expressions-tw 2731b07: a laughing bare face, p 0.585, would have become a mask)."""
    from model.segmenter import CORE_REACH, MIN_CONFIDENCE

    lm = aligned.landmarks
    prob, seg = _mask_prob(aligned)
    zone = lower_face_zone(lm)
    core = lower_face_zone(lm, side_reach=CORE_REACH, chin_reach=CORE_REACH)
    rows = np.nonzero(seg.any(1))[0]
    wall = np.zeros_like(seg)
    wall[rows.min() : rows.max(), 128:] = True
    wall &= ~core & ~seg  # beside the jaw, and past the zone
    image = aligned.image.copy()
    noise = np.random.default_rng(0).normal(0, 6, (int(wall.sum()), 3))
    image[wall] = np.clip(np.array([232, 228, 218]) + noise, 0, 255).astype(np.uint8)
    unsure = np.where(seg, 0.62, 0.02).astype(np.float32)
    unsure[wall & zone] = 0.45  # joined to the region by the hysteresis (p > 0.4)
    blind = final_region(unsure, lm)
    trimmed = final_region(unsure, lm, image=image)
    assert unsure[blind].mean() < MIN_CONFIDENCE <= unsure[trimmed].mean()
    r = find_mask_region(_Fixed(unsure), image, lm)
    assert not r.found and r.message == NO_MASK_MESSAGE
    assert find_mask_region(_Fixed(prob), image, lm).found  # a sure mask on the same photo


def test_the_hole_is_the_region_and_its_rim_never_the_eyes(aligned):
    """What the pipeline inpaints is the final region grown by RIM_PX (the mask's dark outline,
    left outside a tight region, showed as a line in every method's fill), not onto the eyes."""
    import cv2

    from model.masks import eye_guard
    from model.segmenter import RIM_PX

    prob, _ = _mask_prob(aligned)
    r = find_mask_region(_Fixed(prob), aligned.image, aligned.landmarks)
    assert r.found and (r.hole >= r.mask).all()
    ring = r.hole & ~r.mask
    dist = cv2.distanceTransform((~r.mask).astype(np.uint8), cv2.DIST_L2, 5)
    assert ring.sum() > 100 and dist[ring].max() <= RIM_PX + 0.5
    assert not (r.hole & eye_guard(aligned.landmarks, r.hole.shape)).any()
    bare = find_mask_region(_Fixed(np.zeros_like(prob)), aligned.image, aligned.landmarks)
    assert not bare.found and not bare.hole.any()
