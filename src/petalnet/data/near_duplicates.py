"""Near-duplicate photos: one picture resized, recompressed, slightly cropped, flipped or turned grey,
which byte hashes miss.

    looks = [fingerprint(open_rgb(path)) for path in paths]   # a few KiB per photo, while decoding
    pairs = near_duplicate_pairs(looks, threshold=0.9)      # [(i, j, similarity)], i < j
    groups = connected_groups(pairs, len(looks))             # [[i, j, k], ...]

Two stages, as copy detectors do:
1. candidates: each photo's nearest neighbours by an 8 x 8 colour thumbnail and by an 8 x 8 grey one,
   both made blind to flips (each set of four mirror-image cells sorted), one matrix product per block
   of photos;
2. the check: similarity = the best correlation between one photo's whole picture (in its 4 flips) and
   any window of the other covering 90-100% of its width and 90-100% of its height, both ways round.
   Windows are read from a 64 x 64 grey thumbnail (box-filtered) at 16 x 16 and high-passed, so that the
   brightness, contrast, colour and flat areas of a picture do not count, only its shapes.
So a copy cropped by up to about 10% on any sides, resized, recompressed, mirrored, turned upside down,
turned grey or brightened stays near 1, while different photos of one subject rarely pass 0.9
(measured on flower_photos in docs/near-duplicates.md). A flat picture (no shapes at all) matches nothing.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

DEFAULT_THRESHOLD = 0.90  # similarity at or above which two photos are near-duplicates
NEIGHBOURS = 10  # candidates per photo from each of the colour and the grey 8 x 8 thumbnails
THUMB = 64  # the grey thumbnail's side
GRID = 16  # the side of the pictures compared
COLOUR = 8  # the colour thumbnail's side
# Window sizes (fractions of the thumbnail's side) and how many positions each takes along that side.
WINDOW_STEPS = ((1.0, 1), (0.95, 3), (0.925, 4), (0.90, 5))


@dataclass(frozen=True)
class Look:
    """What near-duplicate search keeps of one photo."""

    colour: np.ndarray  # float32 COLOUR*COLOUR*3, flip-blind, zero mean, unit length
    light: np.ndarray  # float32 COLOUR*COLOUR, the same of its grey picture (finds grey copies)
    grey: np.ndarray  # uint8 THUMB x THUMB


def fingerprint(image):
    """The Look of an RGB PIL image: one pass over its pixels (a box-filtered 2*THUMB square), the rest
    from that."""
    square = image.resize((2 * THUMB, 2 * THUMB), Image.Resampling.BOX)
    small = square.resize((COLOUR, COLOUR), Image.Resampling.BOX)
    return Look(colour=_unit(_flip_blind(np.asarray(small, dtype=np.float32)).ravel()),
                light=_unit(_flip_blind(np.asarray(small.convert("L"), dtype=np.float32)).ravel()),
                grey=np.asarray(square.convert("L").resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.uint8))


def _flip_blind(cells):
    """Sort each cell with its three mirror images (left-right, up-down, both): the same for all 4 flips."""
    orbit = np.stack([cells, cells[:, ::-1], cells[::-1], cells[::-1, ::-1]])
    return np.sort(orbit, axis=0)[:, : (len(cells) + 1) // 2, : (len(cells) + 1) // 2]


def _unit(vector):
    vector = vector - vector.mean()
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 1e-6 else np.zeros_like(vector)).astype(np.float32)


def near_duplicate_pairs(looks, threshold=DEFAULT_THRESHOLD, neighbours=NEIGHBOURS):
    """[(i, j, similarity)] with i < j for every pair of `looks` at or above `threshold`, most similar first."""
    import torch  # here, not at the top: the command line imports this module for its defaults

    n = len(looks)
    if n < 2:
        return []
    k = min(neighbours, n - 1)
    candidates = candidate_pairs(np.stack([look.colour for look in looks]), k)
    candidates |= candidate_pairs(np.stack([look.light for look in looks]), k)
    greys = torch.from_numpy(np.stack([look.grey for look in looks])).float()
    wholes = _whole_details(greys)  # n x 4 x GRID*GRID
    partners = [[] for _ in range(n)]
    for i, j in sorted(candidates):
        partners[i].append(j)
        partners[j].append(i)
    best = {}
    for start in range(0, n, 256):
        block = range(start, min(start + 256, n))
        windows = _window_details(greys[block.start:block.stop])  # b x W x GRID*GRID
        for i in block:
            if not partners[i]:
                continue
            others = torch.tensor(partners[i])
            scores = (wholes[others] @ windows[i - start].T).amax(dim=(1, 2)).tolist()
            for j, score in zip(partners[i], scores):
                key = (min(i, j), max(i, j))
                best[key] = max(best.get(key, -1.0), score)
    found = [(i, j, min(score, 1.0)) for (i, j), score in best.items() if score >= threshold]
    return sorted(found, key=lambda pair: (-pair[2], pair[0], pair[1]))


def candidate_pairs(colours, k, block=512):
    """{(i, j)}: each photo with its k nearest neighbours by `colours` (one unit row per photo), i < j."""
    import torch

    database = torch.from_numpy(colours)
    pairs = set()
    for start in range(0, len(colours), block):
        scores = database[start:start + block] @ database.T
        rows = torch.arange(len(scores))
        scores[rows, rows + start] = -2.0  # not itself
        for offset, row in enumerate(scores.topk(k, dim=1).indices.tolist()):
            i = start + offset
            pairs.update((min(i, j), max(i, j)) for j in row)
    return pairs


def _whole_details(greys):
    """n x 4 x GRID*GRID: the detail of each whole thumbnail (the first window), as is and in its 3 flips."""
    import torch

    whole, local = torch.from_numpy(SPANS[:GRID]), torch.from_numpy(LOCAL[:GRID])
    detail = whole @ greys @ whole.T - local @ greys @ local.T
    flips = torch.stack([detail, detail.flip(2), detail.flip(1), detail.flip(1, 2)], dim=1)
    return _unit_rows(flips.reshape(len(greys), 4, GRID * GRID))


def _span_weights():
    """S*GRID x THUMB: row k of span s averages the pixels under the k-th of GRID equal parts of that span
    (a box filter of the exact overlaps), for every span along one side of WINDOW_STEPS."""
    rows = []
    for size, steps in WINDOW_STEPS:
        for k in range(steps):
            start = (1 - size) * THUMB * k / max(steps - 1, 1)
            edges = start + size * THUMB * np.arange(GRID + 1) / GRID
            pixels = np.arange(THUMB)
            overlap = (np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels)).clip(0)
            rows.append(overlap / overlap.sum(axis=1, keepdims=True))
    return np.concatenate(rows).astype(np.float32)


def _local_means():
    """GRID x GRID: row k averages the cells within 2 of k (fewer at the edges)."""
    near = (np.abs(np.arange(GRID)[:, None] - np.arange(GRID)) <= 2).astype(np.float64)
    return (near / near.sum(axis=1, keepdims=True)).astype(np.float32)


SPANS = _span_weights()
SPAN_COUNT = len(SPANS) // GRID  # windows are every span across by every span down: SPAN_COUNT ** 2
# The same spans' 5 x 5 local means, so that a window's detail is SPANS G SPANS' - LOCAL G LOCAL'.
LOCAL = np.kron(np.eye(SPAN_COUNT, dtype=np.float32), _local_means()) @ SPANS


def _window_details(greys):
    """b x W x GRID*GRID: every window of each thumbnail averaged down to GRID x GRID, minus its 5 x 5
    local means, zero mean, unit length (four matrix products)."""
    import torch

    b, s = len(greys), SPAN_COUNT
    spans, local = torch.from_numpy(SPANS), torch.from_numpy(LOCAL)
    detail = spans @ greys @ spans.T - local @ greys @ local.T  # b x (s*GRID down) x (s*GRID across)
    detail = detail.reshape(b, s, GRID, s, GRID).permute(0, 1, 3, 2, 4).reshape(b, s * s, GRID * GRID)
    return _unit_rows(detail)


def _unit_rows(detail):
    """Each row minus its mean, at unit length; a row with no detail (a flat picture) all zeros."""
    import torch

    detail = detail - detail.mean(dim=-1, keepdim=True)
    norm = detail.norm(dim=-1, keepdim=True)
    return torch.where(norm > 1e-3, detail / norm.clamp_min(1e-3), torch.zeros_like(detail))


def connected_groups(pairs, n):
    """Indices joined by any chain of pairs, as sorted lists of 2+, ordered by their first index."""
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in pairs:
        parent[root(i)] = root(j)
    members = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    return sorted((group for group in members.values() if len(group) > 1), key=lambda group: group[0])


def photo_groups(digests, looks, threshold=DEFAULT_THRESHOLD):
    """Near-duplicate groups of a folder's photos, byte-identical copies searched once: (groups, pairs).

    groups: sorted lists of photo indices (2+), each with at least two different files; pairs:
    [(i, j, similarity)] between photos of the groups (one photo standing for its identical copies).
    """
    first, copies = {}, {}
    for i, digest in enumerate(digests):
        first.setdefault(digest, i)
        copies.setdefault(digest, []).append(i)
    unique = sorted(first.values())
    found = near_duplicate_pairs([looks[i] for i in unique], threshold)
    groups = [sorted(k for m in members for k in copies[digests[unique[m]]])
              for members in connected_groups(found, len(unique))]
    return groups, [(unique[i], unique[j], similarity) for i, j, similarity in found]
