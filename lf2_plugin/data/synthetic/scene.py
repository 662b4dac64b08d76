"""Domains, cameras and poses of the synthetic benchmark.

A :class:`DomainSpec` is a 'city': its clothing prior, camera count and the range of imaging conditions.
A :class:`Camera` is one fixed camera of a domain: its background scene, illumination gain and colour cast,
contrast, blur, effective resolution, noise level, occlusion rate and the walking directions it sees.
A :class:`Pose` is what changes from frame to frame: viewpoint, mirroring, scale, position, stride, arm swing.

The first two built-in domains differ in the way Market-1501 and DukeMTMC-reID differ: "market" is bright,
neutral, sharp, with plain backgrounds and summer clothes; "duke" is dim, colour-cast, low-contrast, blurred and
low-resolution, with cluttered street backgrounds, more occlusion and darker winter clothes. "hard" is a target
far from both, as MSMT17 is from Market-1501: each camera renders colour its own way, images are degraded and
compressed, occluded more often and framed loosely, and people dress alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .appearance import AppearancePrior

CROP_H, CROP_W = 128, 64  # saved image size (Market-1501's native crop size)
SUPERSAMPLE = 2  # figures are drawn at 2x and area-downsampled, which anti-aliases the edges
SCENE_W = 3 * CROP_W * SUPERSAMPLE  # a camera scene is wider than a crop; each frame crops it at an offset
VIEWS = ("front", "back", "side")
IDENTITY_MIX = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


@dataclass(frozen=True)
class DomainSpec:
    """Everything that defines one synthetic domain."""

    name: str
    code: int  # integer used in RNG keys
    num_cams: int
    prior: AppearancePrior
    background: str  # "plain" or "cluttered"
    gain: tuple  # camera brightness range
    cast: tuple  # mean RGB multiplier of the domain's light
    cast_spread: float  # per-camera deviation of that multiplier
    contrast: tuple
    blur: tuple  # Gaussian sigma range, in output pixels
    resolution: tuple  # effective resolution / crop resolution, range
    noise: float  # sensor noise std (0-1 scale)
    occlusion: tuple  # probability range that a frame is partly occluded
    scale: tuple  # person height / crop height, range
    cams_per_id: tuple  # (min, max) number of cameras that see one identity
    # Harder per-camera shifts; the defaults switch them off (the market and duke domains do not use them).
    colour_mix: float = 0.0  # std of a per-camera 3x3 colour-mixing matrix around identity (hue shifts)
    gamma: tuple = (1.0, 1.0)  # per-camera tone curve exponent, range
    jpeg_quality: tuple = (92, 92)  # per-camera JPEG quality, range (compression artefacts)
    position_spread: float = 0.04  # std of the person's horizontal offset (fraction of the crop width)


@dataclass(frozen=True)
class Camera:
    """One camera of a domain (its conditions are fixed; only poses and per-frame jitter vary)."""

    cam: int  # 1-based camera id, as in file names
    view_probs: tuple  # probabilities of front, back, side
    gain: float
    cast: tuple
    contrast: float
    blur: float
    resolution: float
    noise: float
    occlusion: float
    light_gradient: float  # brightness slope from top to bottom of the crop
    scene: np.ndarray  # float32 (CROP_H*SS, SCENE_W, 3) RGB background
    colour_matrix: tuple = IDENTITY_MIX  # rows mix R, G, B
    gamma: float = 1.0
    jpeg_quality: int = 92


@dataclass(frozen=True)
class Pose:
    """Per-frame body placement and articulation."""

    view: str
    mirrored: bool  # side view walking to the image left (else right)
    scale: float
    dx: float  # horizontal offset, fraction of crop width
    dy: float  # vertical offset, fraction of crop height
    stride: float  # 0..1 leg spread
    swing: float  # -1..1 arm swing
    scene_offset: int  # crop position within the camera scene (supersampled pixels)
    gain_jitter: float


_MARKET_PRIOR = AppearancePrior(
    upper_colours={
        "white": 6,
        "black": 5,
        "grey": 3,
        "red": 3,
        "lightblue": 2,
        "navy": 2,
        "yellow": 2,
        "pink": 2,
        "green": 2,
        "purple": 1,
        "orange": 1,
        "beige": 1,
        "charcoal": 2,
    },
    lower_colours={
        "black": 6,
        "denim": 4,
        "grey": 3,
        "beige": 3,
        "navy": 2,
        "white": 2,
        "charcoal": 2,
        "brown": 1,
        "olive": 1,
        "lightblue": 1,
    },
    upper_patterns={"solid": 8, "hstripes": 2, "vstripes": 1, "checks": 1, "twotone": 2, "logo": 3},
    lower_patterns={"solid": 10, "sidestripe": 2, "checks": 1, "twotone": 1},
    short_sleeves=0.6,
    lower_lengths={"trousers": 5, "shorts": 3, "skirt": 1.5},
    accessories={"none": 6, "bag": 2, "backpack": 2},
    group_fraction=0.5,
)

_DUKE_PRIOR = AppearancePrior(
    upper_colours={
        "black": 8,
        "charcoal": 5,
        "navy": 4,
        "grey": 3,
        "brown": 2,
        "maroon": 2,
        "olive": 2,
        "white": 2,
        "red": 1,
        "beige": 1,
        "green": 1,
        "denim": 1,
    },
    lower_colours={"black": 7, "denim": 5, "charcoal": 3, "navy": 2, "grey": 2, "beige": 2, "brown": 1, "olive": 1},
    upper_patterns={"solid": 8, "hstripes": 1, "vstripes": 1, "checks": 2, "twotone": 3, "logo": 2},
    lower_patterns={"solid": 10, "sidestripe": 2, "checks": 1, "twotone": 2},
    short_sleeves=0.15,
    lower_lengths={"trousers": 8, "shorts": 0.7, "skirt": 1},
    accessories={"none": 4, "bag": 2, "backpack": 3},
    group_fraction=0.5,
)

# A city where everyone dresses alike: few, mostly dark colours, few patterns, and most people in a local-cue group
# (sharing one garment with 1-2 others), so appearance alone separates identities less than in the other domains.
_HARD_PRIOR = AppearancePrior(
    upper_colours={
        "black": 6,
        "charcoal": 4,
        "navy": 3,
        "grey": 3,
        "white": 3,
        "denim": 2,
        "maroon": 2,
        "olive": 2,
        "beige": 2,
        "red": 1,
        "green": 1,
        "brown": 1,
    },
    lower_colours={"black": 6, "denim": 5, "charcoal": 3, "navy": 2, "grey": 2, "beige": 2, "brown": 1, "olive": 1},
    upper_patterns={"solid": 8, "twotone": 2, "logo": 2, "hstripes": 1, "vstripes": 1, "checks": 1},
    lower_patterns={"solid": 10, "sidestripe": 2, "twotone": 1, "checks": 1},
    short_sleeves=0.3,
    lower_lengths={"trousers": 8, "shorts": 1, "skirt": 1},
    accessories={"none": 4, "bag": 2, "backpack": 3},
    group_fraction=0.6,
)

DOMAINS = {
    "market": DomainSpec(
        name="market",
        code=1,
        num_cams=6,
        prior=_MARKET_PRIOR,
        background="plain",
        gain=(0.95, 1.1),
        cast=(1.0, 1.0, 1.0),
        cast_spread=0.03,
        contrast=(0.95, 1.05),
        blur=(0.0, 0.4),
        resolution=(0.9, 1.0),
        noise=0.012,
        occlusion=(0.0, 0.1),
        scale=(0.84, 0.95),
        cams_per_id=(2, 4),
    ),
    "duke": DomainSpec(
        name="duke",
        code=2,
        num_cams=8,
        prior=_DUKE_PRIOR,
        background="cluttered",
        gain=(0.65, 0.9),
        cast=(0.9, 1.0, 1.12),
        cast_spread=0.08,
        contrast=(0.75, 0.9),
        blur=(0.4, 0.9),
        resolution=(0.5, 0.7),
        noise=0.025,
        occlusion=(0.1, 0.3),
        scale=(0.74, 0.88),
        cams_per_id=(2, 4),
    ),
    # The hard target: every camera its own colour rendition (cast, channel mixing, tone curve, gain), strong blur,
    # low resolution and JPEG compression, frequent occluders, loose framing, and look-alike clothing.
    "hard": DomainSpec(
        name="hard",
        code=3,
        num_cams=6,
        prior=_HARD_PRIOR,
        background="cluttered",
        gain=(0.6, 1.1),
        cast=(1.0, 1.0, 1.0),
        cast_spread=0.1,
        contrast=(0.7, 1.0),
        blur=(0.3, 0.7),
        resolution=(0.6, 0.9),
        noise=0.025,
        occlusion=(0.1, 0.3),
        scale=(0.7, 0.92),
        cams_per_id=(2, 4),
        colour_mix=0.06,
        gamma=(0.8, 1.25),
        jpeg_quality=(40, 75),
        position_spread=0.06,
    ),
}


def smooth_noise(rng, height, width, cells, amplitude):
    """Low-frequency noise: a coarse random grid bicubically upsampled (cheap 'texture' for walls and fabric)."""
    coarse = rng.normal(0.0, amplitude, (max(2, height // cells), max(2, width // cells))).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _plain_scene(rng):
    height = CROP_H * SUPERSAMPLE
    wall = np.clip(rng.uniform(0.55, 0.82) + rng.normal(0, 0.04, 3), 0, 1)
    floor = np.clip(wall * rng.uniform(0.75, 0.95) + rng.normal(0, 0.03, 3), 0, 1)
    horizon = int(height * rng.uniform(0.55, 0.8))
    scene = np.empty((height, SCENE_W, 3), np.float32)
    scene[:horizon] = wall
    scene[horizon:] = floor
    scene *= 1.0 + np.linspace(-0.05, 0.05, height, dtype=np.float32)[:, None, None]
    scene += smooth_noise(rng, height, SCENE_W, 32, 0.025)[..., None]
    return np.clip(scene, 0, 1)


def _random_colour(rng, low=0.1, high=0.9, saturation=1.0):
    rgb = rng.uniform(low, high, 3)
    return tuple(float(c) for c in rgb.mean() + saturation * (rgb - rgb.mean()))


def _cluttered_scene(rng):
    """A street: facade with windows, poles, trees, parked cars, pavement -- with texture everywhere."""
    height = CROP_H * SUPERSAMPLE
    scene = np.empty((height, SCENE_W, 3), np.float32)
    horizon = int(height * rng.uniform(0.55, 0.7))
    scene[:horizon] = _random_colour(rng, 0.25, 0.7)
    scene[horizon:] = _random_colour(rng, 0.2, 0.45)
    # Facade: window grid.
    win_w, win_h = int(rng.integers(14, 30)), int(rng.integers(18, 34))
    for x in range(int(rng.integers(0, 20)), SCENE_W, win_w + int(rng.integers(10, 24))):
        for y in range(int(rng.integers(0, 15)), horizon - win_h, win_h + int(rng.integers(12, 24))):
            cv2.rectangle(scene, (x, y), (x + win_w, y + win_h), _random_colour(rng, 0.05, 0.6, 0.5), -1)
    # Trees and poles.
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = int(rng.integers(0, SCENE_W)), int(rng.integers(horizon // 3, horizon))
        cv2.rectangle(scene, (cx - 4, cy), (cx + 4, horizon + 10), (0.3, 0.2, 0.1), -1)
        green = (rng.uniform(0.1, 0.3), rng.uniform(0.3, 0.55), rng.uniform(0.05, 0.25))
        for _ in range(5):
            cv2.circle(
                scene,
                (cx + int(rng.integers(-25, 26)), cy - int(rng.integers(0, 40))),
                int(rng.integers(14, 28)),
                green,
                -1,
            )
    for _ in range(int(rng.integers(2, 5))):
        x = int(rng.integers(0, SCENE_W))
        cv2.rectangle(
            scene,
            (x, int(rng.integers(0, horizon // 2))),
            (x + int(rng.integers(3, 8)), height),
            _random_colour(rng, 0.1, 0.5),
            -1,
        )
    # Parked cars along the kerb.
    for _ in range(int(rng.integers(2, 5))):
        x, y = int(rng.integers(-40, SCENE_W)), horizon + int(rng.integers(-30, 10))
        width, car_h = int(rng.integers(90, 150)), int(rng.integers(40, 60))
        cv2.rectangle(scene, (x, y), (x + width, y + car_h), _random_colour(rng, 0.1, 0.95, 0.7), -1)
        cv2.rectangle(scene, (x + 15, y - car_h // 2), (x + width - 20, y), (0.12, 0.14, 0.18), -1)
        for wheel_x in (x + 20, x + width - 22):
            cv2.circle(scene, (wheel_x, y + car_h), 13, (0.05, 0.05, 0.05), -1)
    # Kerb and pavement slabs.
    cv2.line(scene, (0, horizon + 45), (SCENE_W, horizon + 45), (0.75, 0.75, 0.7), 3)
    for x in range(0, SCENE_W, int(rng.integers(30, 60))):
        cv2.line(scene, (x, horizon + 48), (x - 30, height), (0.15, 0.15, 0.15), 1)
    scene += smooth_noise(rng, height, SCENE_W, 8, 0.045)[..., None]
    scene += rng.normal(0.0, 0.02, scene.shape).astype(np.float32)
    return np.clip(scene, 0, 1)


def make_camera(domain: DomainSpec, cam: int, seed: int) -> Camera:
    """Camera ``cam`` (1-based) of ``domain``; a pure function of (domain, cam, seed)."""
    rng = np.random.default_rng([seed, domain.code, 100, cam])
    # Each camera looks along a walkway, so one walking direction dominates what it sees.
    view_probs = rng.dirichlet((0.7, 0.7, 0.7)) * 0.7 + 0.1
    cast = np.asarray(domain.cast) * (1.0 + rng.normal(0.0, domain.cast_spread, 3))
    scene = _plain_scene(rng) if domain.background == "plain" else _cluttered_scene(rng)
    return Camera(
        cam=cam,
        view_probs=tuple(float(p) for p in view_probs / view_probs.sum()),
        gain=float(rng.uniform(*domain.gain)),
        cast=tuple(float(c) for c in cast),
        contrast=float(rng.uniform(*domain.contrast)),
        blur=float(rng.uniform(*domain.blur)),
        resolution=float(rng.uniform(*domain.resolution)),
        noise=domain.noise,
        occlusion=float(rng.uniform(*domain.occlusion)),
        light_gradient=float(rng.uniform(-0.15, 0.15)),
        scene=scene,
        **_harder_conditions(rng, domain),
    )


def _harder_conditions(rng, domain: DomainSpec) -> dict:
    """The optional per-camera shifts of ``domain`` (drawn after everything else, so domains without them keep
    their cameras exactly)."""
    conditions = {}
    if domain.colour_mix > 0:
        matrix = np.eye(3) + rng.normal(0.0, domain.colour_mix, (3, 3))
        matrix /= matrix.sum(axis=1, keepdims=True)  # a grey stays grey in brightness; only hues move
        conditions["colour_matrix"] = tuple(tuple(float(v) for v in row) for row in matrix)
    if domain.gamma != (1.0, 1.0):
        conditions["gamma"] = float(np.exp(rng.uniform(*np.log(domain.gamma))))
    if domain.jpeg_quality != (92, 92):
        conditions["jpeg_quality"] = int(rng.integers(domain.jpeg_quality[0], domain.jpeg_quality[1] + 1))
    return conditions


def sample_pose(rng, domain: DomainSpec, camera: Camera) -> Pose:
    """One frame's pose under ``camera``."""
    view = VIEWS[rng.choice(3, p=camera.view_probs)]
    return Pose(
        view=view,
        mirrored=bool(rng.random() < 0.5),
        scale=float(rng.uniform(*domain.scale)),
        dx=float(rng.normal(0.0, domain.position_spread)),
        dy=float(rng.normal(0.0, 0.02)),
        stride=float(rng.uniform(0.0, 1.0)),
        swing=float(rng.uniform(-1.0, 1.0)),
        scene_offset=int(rng.integers(0, SCENE_W - CROP_W * SUPERSAMPLE + 1)),
        gain_jitter=float(rng.uniform(0.9, 1.1)),
    )
