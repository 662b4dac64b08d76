"""Identities of the synthetic benchmark: body shape, colours and textures of every body part.

An :class:`Identity` is everything that stays fixed for one person across cameras and frames. Identities
are drawn from a *domain prior* (clothing palette, how often people wear shorts or carry a backpack), and a
fraction of them are built in *local-cue groups*: 2-3 people identical in everything except the garment of
one body half (upper or lower). Their global colour statistics nearly coincide, so only a part-level feature
tells them apart -- the situation LF2's upper/lower branches are meant for.

Randomness: every identity is drawn from its own ``numpy.random.Generator`` keyed by (seed, domain, pid),
so an identity never depends on how many others were generated before it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# Named clothing colours (RGB, 0-1). Real crowds wear mostly dark/neutral clothes; the weights in each domain
# prior below keep that, so many identities share their dominant colours and colour alone is not enough.
COLOURS = {
    "black": (0.08, 0.08, 0.09),
    "charcoal": (0.22, 0.22, 0.24),
    "grey": (0.50, 0.50, 0.50),
    "white": (0.92, 0.92, 0.90),
    "navy": (0.10, 0.14, 0.35),
    "denim": (0.25, 0.36, 0.56),
    "lightblue": (0.55, 0.70, 0.88),
    "beige": (0.80, 0.72, 0.56),
    "brown": (0.40, 0.26, 0.15),
    "olive": (0.38, 0.40, 0.20),
    "green": (0.15, 0.50, 0.25),
    "red": (0.78, 0.12, 0.12),
    "maroon": (0.45, 0.08, 0.12),
    "pink": (0.92, 0.58, 0.68),
    "yellow": (0.93, 0.80, 0.20),
    "orange": (0.92, 0.50, 0.12),
    "purple": (0.42, 0.22, 0.55),
}
SKIN_TONES = ((0.96, 0.80, 0.69), (0.87, 0.68, 0.54), (0.72, 0.53, 0.38), (0.55, 0.38, 0.26), (0.36, 0.24, 0.16))
HAIR_COLOURS = ((0.05, 0.04, 0.03), (0.20, 0.13, 0.08), (0.42, 0.28, 0.15), (0.75, 0.62, 0.38), (0.55, 0.55, 0.55))

UPPER_PATTERNS = ("solid", "hstripes", "vstripes", "checks", "twotone", "logo")
LOWER_PATTERNS = ("solid", "sidestripe", "checks", "twotone")
UPPER_LENGTHS = ("short", "long")
LOWER_LENGTHS = ("shorts", "trousers", "skirt")
HAIR_STYLES = ("short", "long", "cap", "bald")
ACCESSORIES = ("none", "bag", "backpack")


@dataclass(frozen=True)
class Garment:
    """One garment: colours, pattern and length. ``colour2`` is the pattern's second colour."""

    colour: tuple
    colour2: tuple
    pattern: str
    length: str
    period: float  # stripe/check period in units of body height


@dataclass(frozen=True)
class Body:
    """Body proportions in units of the body height (head top to sole)."""

    shoulder: float
    waist: float
    hip: float
    head: float
    leg: float


@dataclass(frozen=True)
class Identity:
    """A synthetic person. ``group`` >= 0 marks members of one local-cue group, which differ only in
    the garment named by ``differing_half`` ("upper" or "lower")."""

    pid: int
    body: Body
    skin: tuple
    hair: tuple
    hair_style: str
    cap: tuple
    upper: Garment
    lower: Garment
    shoes: tuple
    accessory: str
    accessory_side: int  # +1: on the person's right side, -1: left
    accessory_colour: tuple
    group: int = -1
    differing_half: str | None = None


@dataclass(frozen=True)
class AppearancePrior:
    """Domain-specific clothing statistics (what people wear in this 'city and season')."""

    upper_colours: dict
    lower_colours: dict
    upper_patterns: dict
    lower_patterns: dict
    short_sleeves: float
    lower_lengths: dict
    accessories: dict
    group_fraction: float  # fraction of identities that belong to a local-cue group


def _choice(rng, weights: dict):
    names = list(weights)
    probs = np.asarray([weights[n] for n in names], dtype=np.float64)
    return names[rng.choice(len(names), p=probs / probs.sum())]


def _jitter_colour(rng, rgb, amount=0.05):
    return tuple(float(c) for c in np.clip(np.asarray(rgb) + rng.normal(0.0, amount, 3), 0.0, 1.0))


def _luminance(rgb):
    return 0.3 * rgb[0] + 0.59 * rgb[1] + 0.11 * rgb[2]


def _contrasting_colour(rng, prior_colours: dict, first_rgb):
    """A pattern's second colour: clearly lighter or darker than the first, so stripes/checks/logos show."""
    far = {k: w for k, w in prior_colours.items() if abs(_luminance(COLOURS[k]) - _luminance(first_rgb)) >= 0.3}
    return _choice(rng, far or {"white": 1, "black": 1})


def sample_garment(rng, prior: AppearancePrior, half: str) -> Garment:
    """Draw an upper or lower garment from the domain prior."""
    colours = prior.upper_colours if half == "upper" else prior.lower_colours
    patterns = prior.upper_patterns if half == "upper" else prior.lower_patterns
    name = _choice(rng, colours)
    name2 = _contrasting_colour(rng, {**prior.upper_colours, **prior.lower_colours}, COLOURS[name])
    if half == "upper":
        length = "short" if rng.random() < prior.short_sleeves else "long"
    else:
        length = _choice(rng, prior.lower_lengths)
    return Garment(
        colour=_jitter_colour(rng, COLOURS[name]),
        colour2=_jitter_colour(rng, COLOURS[name2]),
        pattern=_choice(rng, patterns),
        length=length,
        period=float(rng.uniform(0.05, 0.09)),
    )


def confusable_variant(rng, garment: Garment, prior: AppearancePrior, half: str) -> Garment:
    """A visibly different garment with the same dominant colour as ``garment``.

    Always changes the pattern (stripes, checks, colour block, logo, side stripe, or back to plain), and
    sometimes also the length (sleeves, shorts, skirt) or the pattern's second colour. The dominant colour,
    which fills most of the garment, stays, so global colour histograms of the two wearers nearly coincide.
    """
    patterns = UPPER_PATTERNS if half == "upper" else LOWER_PATTERNS
    lengths = UPPER_LENGTHS if half == "upper" else LOWER_LENGTHS
    pattern = patterns[(patterns.index(garment.pattern) + 1 + rng.integers(len(patterns) - 1)) % len(patterns)]
    length, colour2 = garment.length, garment.colour2
    if rng.random() < 0.4:
        length = lengths[(lengths.index(length) + 1 + rng.integers(len(lengths) - 1)) % len(lengths)]
    if rng.random() < 0.5:
        name2 = _contrasting_colour(rng, {**prior.upper_colours, **prior.lower_colours}, garment.colour)
        colour2 = _jitter_colour(rng, COLOURS[name2])
    return replace(garment, pattern=pattern, length=length, colour2=colour2, period=float(rng.uniform(0.05, 0.09)))


def garment_signature(garment: Garment) -> tuple:
    """What makes two garments of one dominant colour look different (the stripe period alone does not)."""
    colour2 = None if garment.pattern == "solid" else tuple(round(c, 1) for c in garment.colour2)
    return garment.pattern, garment.length, colour2


def sample_identity(rng, prior: AppearancePrior, pid: int) -> Identity:
    """Draw one person (body, hair, garments, shoes, accessory) from the domain prior."""
    shoulder = float(rng.uniform(0.21, 0.28))
    body = Body(
        shoulder=shoulder,
        waist=shoulder * float(rng.uniform(0.68, 0.85)),
        hip=shoulder * float(rng.uniform(0.75, 0.92)),
        head=float(rng.uniform(0.058, 0.07)),
        leg=float(rng.uniform(0.062, 0.08)),
    )
    accessory = _choice(rng, prior.accessories)
    acc_name = _choice(rng, {"black": 4, "charcoal": 2, "brown": 2, "navy": 1, "red": 1, "beige": 1, "green": 1})
    return Identity(
        pid=pid,
        body=body,
        skin=SKIN_TONES[rng.integers(len(SKIN_TONES))],
        hair=_jitter_colour(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 0.03),
        hair_style=HAIR_STYLES[rng.choice(4, p=[0.45, 0.3, 0.15, 0.1])],
        cap=_jitter_colour(rng, COLOURS[_choice(rng, prior.upper_colours)]),
        upper=sample_garment(rng, prior, "upper"),
        lower=sample_garment(rng, prior, "lower"),
        shoes=_jitter_colour(rng, COLOURS[_choice(rng, {"black": 5, "white": 3, "brown": 2, "grey": 1, "red": 0.5})]),
        accessory=accessory,
        accessory_side=1 if rng.random() < 0.5 else -1,
        accessory_colour=_jitter_colour(rng, COLOURS[acc_name]),
    )


def group_sizes(rng, num_ids: int, group_fraction: float) -> list:
    """Partition ``num_ids`` consecutive identities into singletons and local-cue groups of 2-3."""
    sizes, left = [], num_ids
    while left > 0:
        # Groups average 2.25 members; this start probability makes ~group_fraction of ids grouped.
        if left >= 2 and rng.random() < group_fraction / (2.25 - 1.25 * group_fraction):
            size = 3 if (left >= 3 and rng.random() < 0.25) else 2
        else:
            size = 1
        sizes.append(size)
        left -= size
    return sizes


def build_identities(pids, prior: AppearancePrior, key) -> list:
    """Identities for ``pids`` (in order), forming local-cue groups among consecutive pids.

    ``key`` is a tuple of ints (seed, domain code, split code). Group layout and each group's base
    person use generators keyed by ``key``; nothing depends on global RNG state.
    """
    pids = list(pids)
    sizes = group_sizes(np.random.default_rng([*key, 0]), len(pids), prior.group_fraction)
    identities, start = [], 0
    for group_index, size in enumerate(sizes):
        members = pids[start : start + size]
        start += size
        rng = np.random.default_rng([*key, 1, members[0]])
        base = sample_identity(rng, prior, members[0])
        if size == 1:
            identities.append(base)
            continue
        half = "upper" if rng.random() < 0.5 else "lower"
        base = replace(base, group=group_index, differing_half=half)
        identities.append(base)
        seen = {garment_signature(getattr(base, half))}
        for pid in members[1:]:
            variant = confusable_variant(np.random.default_rng([*key, 2, pid]), getattr(base, half), prior, half)
            retry = 0
            while garment_signature(variant) in seen:  # never two look-alike group members
                retry += 1
                variant = confusable_variant(np.random.default_rng([*key, 3, pid, retry]), variant, prior, half)
            seen.add(garment_signature(variant))
            identities.append(replace(base, pid=pid, **{half: variant}))
    return identities
