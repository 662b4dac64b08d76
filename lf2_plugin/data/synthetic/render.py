"""Drawing one pedestrian crop: body parts -> label map -> colours/textures -> camera effects.

Parts are painted back to front (painter's algorithm) into a *label map* at 2x resolution with OpenCV's
polygon/ellipse fills, together with a *shade map* (far-side limbs are darker). Each label is then
coloured in one vectorised step -- solid colour or a pattern evaluated in body coordinates, so stripes and
checks move with the body -- and composited over the camera's background. Camera effects (occluder,
area-downsampling, lower effective resolution, blur, gain/colour cast/contrast/light gradient, sensor
noise) follow in that order.

Body coordinates: ``u`` horizontal and ``v`` vertical, both in units of the body height; ``v=0`` is the top
of the head and ``v=1`` the soles. The garment boundary sits at ``v~0.52``, i.e. near the middle row of
the crop, so the image's upper half shows head+upper garment and its lower half the lower garment+shoes.
"""

from __future__ import annotations

import cv2
import numpy as np

from .appearance import Identity
from .scene import CROP_H, CROP_W, IDENTITY_MIX, SUPERSAMPLE, Camera, Pose, smooth_noise

BG, SKIN, HAIR, UPPER, LOWER, SHOES, ACCESSORY, STRAP, CAP, LOGO = range(10)
FAR_SHADE = 0.72  # limbs on the far side of the body are in the body's shadow
_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel accurate polygon vertices
_H, _W = CROP_H * SUPERSAMPLE, CROP_W * SUPERSAMPLE


class _Painter:
    """Paints parts given in body coordinates into the label and shade maps of one frame."""

    def __init__(self, pose: Pose):
        self.height = pose.scale * _H
        self.top = (_H - self.height) / 2 + pose.dy * _H
        self.cx = _W / 2 + pose.dx * _W
        self.sign = -1.0 if pose.mirrored else 1.0  # mirrored side view walks to the image left
        self.labels = np.zeros((_H, _W), np.uint8)
        self.shade = np.ones((_H, _W), np.float32)

    def _pixels(self, points):
        uv = np.asarray(points, np.float64).reshape(-1, 2)
        xy = np.stack([self.cx + self.sign * uv[:, 0] * self.height, self.top + uv[:, 1] * self.height], 1)
        return np.round(xy * (1 << _SHIFT)).astype(np.int32)

    def poly(self, points, label, shade=1.0):
        pts = [self._pixels(points)]
        cv2.fillPoly(self.labels, pts, int(label), cv2.LINE_8, _SHIFT)
        cv2.fillPoly(self.shade, pts, float(shade), cv2.LINE_8, _SHIFT)

    def ellipse(self, centre, axes, label, shade=1.0):
        c = tuple(int(x) for x in self._pixels([centre])[0])
        ax = tuple(int(round(a * self.height * (1 << _SHIFT))) for a in axes)
        cv2.ellipse(self.labels, c, ax, 0, 0, 360, int(label), -1, cv2.LINE_8, _SHIFT)
        cv2.ellipse(self.shade, c, ax, 0, 0, 360, float(shade), -1, cv2.LINE_8, _SHIFT)

    def rect(self, u0, v0, u1, v1, label, shade=1.0):
        self.poly([(u0, v0), (u1, v0), (u1, v1), (u0, v1)], label, shade)

    def limb(self, joints, widths, label, shade=1.0):
        """A tapered chain of segments through ``joints`` with round joints (arms, legs)."""
        for (p0, p1), w0, w1 in zip(zip(joints[:-1], joints[1:]), widths[:-1], widths[1:]):
            p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
            d = p1 - p0
            n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-9)
            self.poly([p0 + n * w0 / 2, p1 + n * w1 / 2, p1 - n * w1 / 2, p0 - n * w0 / 2], label, shade)
            self.ellipse(p1, (w1 / 2, w1 / 2), label, shade)

    def clothed_limb(self, joints, widths, covered_to, label, shade=1.0):
        """A limb that is skin below ``v=covered_to`` and garment ``label`` above it (sleeves, shorts)."""
        self.limb(joints, widths, SKIN, shade)
        if covered_to <= joints[0][1]:
            return
        # Cut the chain where it crosses v=covered_to and paint the covered part with the garment.
        cut_joints, cut_widths = [joints[0]], [widths[0]]
        for p0, p1, w0, w1 in zip(joints[:-1], joints[1:], widths[:-1], widths[1:]):
            if p1[1] <= covered_to:
                cut_joints.append(p1), cut_widths.append(w1)
                continue
            t = (covered_to - p0[1]) / max(p1[1] - p0[1], 1e-9)
            cut_joints.append((p0[0] + t * (p1[0] - p0[0]), covered_to))
            cut_widths.append(w0 + t * (w1 - w0))
            break
        self.limb(cut_joints, cut_widths, label, shade)


_SLEEVE_END = {"short": 0.29, "long": 0.48}
_LEG_COVER = {"trousers": 1.0, "shorts": 0.69, "skirt": 0.0}


def _draw_head(p: _Painter, ident: Identity, view: str):
    r = ident.body.head
    centre = (0.0, r * 1.02)
    face_visible = view != "back"
    style = ident.hair_style
    if style == "long":  # hair falling behind the head onto the shoulders/back
        if view == "side":
            p.rect(-0.95 * r, r, -0.05 * r, 0.23, HAIR)
        elif view == "back":
            p.rect(-0.9 * r, r, 0.9 * r, 0.25, HAIR)
    p.ellipse(centre, (0.85 * r, r), HAIR if style in ("short", "long") else SKIN)
    if face_visible:
        if view == "front":
            p.ellipse((0.0, r * 1.3), (0.72 * r, 0.76 * r), SKIN)
            if style == "long":
                for side in (-1, 1):
                    p.rect(side * 0.55 * r, r, side * 1.0 * r, 0.21, HAIR)
        else:
            p.ellipse((0.3 * r, r * 1.25), (0.62 * r, 0.8 * r), SKIN)
    if style == "cap":
        p.ellipse((0.0, r * 0.75), (0.9 * r, 0.62 * r), CAP)
        if view == "front":
            p.rect(-0.85 * r, 0.95 * r, 0.85 * r, 1.15 * r, CAP, 0.8)
        elif view == "side":
            p.rect(0.2 * r, 0.95 * r, 1.3 * r, 1.15 * r, CAP, 0.8)


def _draw_frontal(p: _Painter, ident: Identity, pose: Pose):
    """Front or back view (the person faces the camera or walks away from it)."""
    b, back = ident.body, pose.view == "back"
    sw, ww, hw = b.shoulder / 2, b.waist / 2, b.hip / 2
    acc_u = float(ident.accessory_side if back else -ident.accessory_side)  # person's right = image left
    if ident.accessory == "backpack" and not back:  # the pack's sides peek out behind the shoulders
        p.rect(-sw * 0.95, 0.2, sw * 0.95, 0.42, ACCESSORY, FAR_SHADE)
    lifted = 1 if pose.swing > 0 else -1
    for side in (-1, 1):
        lift = 0.025 * pose.stride if side == lifted else 0.0
        foot = (side * (hw * 0.5 + 0.015 * pose.stride), 0.945 - lift)
        joints = [(side * hw * 0.5, 0.52), (side * hw * 0.5, 0.74 - lift / 2), foot]
        p.clothed_limb(joints, [hw, b.leg, b.leg * 0.8], _LEG_COVER[ident.lower.length], LOWER)
        p.ellipse((foot[0], foot[1] + 0.02), (b.leg * 0.55, 0.024), SHOES)
    p.rect(-hw, 0.47, hw, 0.57, LOWER)
    if ident.lower.length == "skirt":
        p.poly([(-hw, 0.47), (hw, 0.47), (hw * 1.45, 0.70), (-hw * 1.45, 0.70)], LOWER)
    for side in (-1, 1):
        swing = pose.swing * side * 0.015
        joints = [(side * (sw - 0.025), 0.19), (side * (sw + 0.005), 0.34), (side * (sw - 0.005 + swing), 0.49)]
        p.clothed_limb(joints, [0.06, 0.05, 0.042], _SLEEVE_END[ident.upper.length], UPPER)
        p.ellipse(joints[-1], (0.022, 0.024), SKIN)
    p.rect(-0.022, 0.11, 0.022, 0.17, SKIN)
    p.poly(
        [
            (-sw, 0.18),
            (-sw + 0.03, 0.158),
            (sw - 0.03, 0.158),
            (sw, 0.18),
            (sw * 0.97, 0.26),
            (ww, 0.40),
            (hw, 0.52),
            (-hw, 0.52),
            (-ww, 0.40),
            (-sw * 0.97, 0.26),
        ],
        UPPER,
    )
    if ident.upper.pattern == "logo" and not back:
        p.ellipse((-0.025, 0.27), (0.042, 0.04), LOGO)
    if ident.accessory == "backpack":
        if back:
            p.poly([(-sw * 0.7, 0.2), (sw * 0.7, 0.2), (sw * 0.75, 0.43), (-sw * 0.75, 0.43)], ACCESSORY)
            p.rect(-sw * 0.5, 0.33, sw * 0.5, 0.41, ACCESSORY, 0.8)  # front pocket
        else:
            for side in (-1, 1):
                p.limb([(side * sw * 0.55, 0.165), (side * sw * 0.5, 0.37)], [0.025, 0.025], STRAP)
    elif ident.accessory == "bag":
        p.limb([(-acc_u * sw * 0.6, 0.17), (acc_u * hw * 0.9, 0.46)], [0.018, 0.018], STRAP)
        p.rect(acc_u * (hw - 0.01), 0.43, acc_u * (hw + 0.1), 0.56, ACCESSORY)
    _draw_head(p, ident, pose.view)


def _draw_side(p: _Painter, ident: Identity, pose: Pose):
    """Side view, walking towards +u (the painter mirrors it for walking to the image left)."""
    b = ident.body
    d = b.shoulder * 0.28  # half the body depth seen from the side
    stride, swing = pose.stride, pose.swing

    def arm(direction, shade):
        joints = [(0.0, 0.19), (direction * swing * 0.04, 0.34), (direction * swing * 0.09, 0.49)]
        p.clothed_limb(joints, [0.055, 0.048, 0.04], _SLEEVE_END[ident.upper.length], UPPER, shade)
        p.ellipse(joints[-1], (0.021, 0.023), SKIN, shade)

    def leg(direction, shade):
        foot = (direction * stride * 0.11, 0.945)
        joints = [(0.0, 0.53), (direction * stride * 0.05 + 0.01, 0.74), foot]
        p.clothed_limb(joints, [d * 1.8, b.leg, b.leg * 0.8], _LEG_COVER[ident.lower.length], LOWER, shade)
        p.ellipse((foot[0] + 0.02, foot[1] + 0.02), (0.045, 0.022), SHOES, shade)

    # The camera sees the person's right side when they walk to the image right.
    bag_visible = ident.accessory_side == (-1 if pose.mirrored else 1)
    arm(-1, FAR_SHADE)
    leg(-1, FAR_SHADE)
    if ident.accessory == "backpack":
        p.poly([(-d - 0.08, 0.2), (-d + 0.01, 0.19), (-d + 0.01, 0.44), (-d - 0.085, 0.43)], ACCESSORY)
    elif ident.accessory == "bag" and not bag_visible:
        p.rect(-d - 0.04, 0.44, -d + 0.02, 0.56, ACCESSORY, FAR_SHADE)
    leg(1, 1.0)
    p.poly([(-d * 1.05, 0.47), (d * 1.1, 0.47), (d * 1.05, 0.58), (-d * 1.05, 0.58)], LOWER)
    if ident.lower.length == "skirt":
        p.poly([(-d * 1.05, 0.47), (d * 1.1, 0.47), (d * 1.5, 0.70), (-d * 1.5, 0.70)], LOWER)
    p.rect(-0.02, 0.11, 0.025, 0.17, SKIN)
    p.poly(
        [
            (-d, 0.16),
            (d * 0.6, 0.16),
            (d * 1.1, 0.23),
            (d, 0.40),
            (d * 1.05, 0.52),
            (-d * 1.05, 0.52),
            (-d * 1.0, 0.35),
            (-d * 1.1, 0.21),
        ],
        UPPER,
    )
    if ident.accessory == "backpack":
        p.limb([(-d * 0.2, 0.165), (d * 0.3, 0.36)], [0.022, 0.022], STRAP)
    _draw_head(p, ident, "side")
    arm(1, 1.0)
    if ident.accessory == "bag" and bag_visible:
        p.limb([(-d * 0.4, 0.17), (0.0, 0.45)], [0.018, 0.018], STRAP)
        p.rect(-0.065, 0.44, 0.05, 0.57, ACCESSORY)


def _pattern(garment, u, v, top_v, split_v):
    """Colour per pixel of a garment pattern evaluated at body coordinates ``u, v``."""
    c1, c2 = np.asarray(garment.colour, np.float32), np.asarray(garment.colour2, np.float32)
    period = garment.period
    if garment.pattern == "hstripes":
        second = np.floor((v - top_v) / period) % 2 == 1
    elif garment.pattern == "vstripes":
        second = np.floor(u / period + 0.5) % 2 == 1
    elif garment.pattern == "checks":
        second = (np.floor(u / period) + np.floor(v / period)) % 2 == 1
        c2 = 0.3 * c1 + 0.7 * c2  # plaid: the second colour is toned down towards the first
    elif garment.pattern == "twotone":
        second = v > split_v
    elif garment.pattern == "sidestripe":
        second = np.abs(np.abs(u) - 0.055) < 0.02
    else:  # solid; "logo" is a separately painted part
        return np.broadcast_to(c1, (u.size, 3))
    return np.where(second[:, None], c2, c1)


def _colourise(p: _Painter, ident: Identity, fabric: np.ndarray):
    """RGB float image of the figure (zeros where the label map is background)."""
    ys, xs = np.nonzero(p.labels)
    labels = p.labels[ys, xs]
    u = p.sign * (xs + 0.5 - p.cx) / p.height
    v = (ys + 0.5 - p.top) / p.height
    colours = np.zeros((labels.size, 3), np.float32)
    solid = {
        SKIN: ident.skin,
        HAIR: ident.hair,
        SHOES: ident.shoes,
        ACCESSORY: ident.accessory_colour,
        STRAP: tuple(0.7 * c for c in ident.accessory_colour),
        CAP: ident.cap,
        LOGO: ident.upper.colour2,
    }
    for label, colour in solid.items():
        colours[labels == label] = colour
    lower_split = 0.78 if ident.lower.length == "trousers" else 0.6  # keep the colour block above bare legs
    for label, garment, top_v, split_v in ((UPPER, ident.upper, 0.16, 0.36), (LOWER, ident.lower, 0.47, lower_split)):
        sel = labels == label
        colours[sel] = _pattern(garment, u[sel], v[sel], top_v, split_v)
    # Rounded-body shading (darker towards the silhouette edges), far-side shadow and fabric texture.
    half_width = ident.body.shoulder / 2 + 0.03
    roundness = 1.0 - 0.28 * np.clip(np.abs(u) / half_width, 0.0, 1.0) ** 2
    factor = roundness * p.shade[ys, xs] * (1.0 + fabric[ys, xs])
    figure = np.zeros((_H, _W, 3), np.float32)
    figure[ys, xs] = colours * factor[:, None]
    return figure


def _occlude(image, rng):
    """Paint a foreground occluder: a pole, a low wall/car body, or a passer-by at one side."""
    kind = rng.integers(3)
    colour = tuple(float(c) for c in rng.uniform(0.05, 0.85, 3))
    if kind == 0:
        x = int(rng.integers(0, _W - 12))
        cv2.rectangle(image, (x, 0), (x + int(rng.integers(10, 24)), _H), colour, -1)
    elif kind == 1:
        y = int(_H * rng.uniform(0.68, 0.85))
        cv2.rectangle(image, (0, y), (_W, _H), colour, -1)
        cv2.line(image, (0, y), (_W, y), tuple(0.6 * c for c in colour), 3)
    else:
        side = int(rng.integers(2))
        cx = int(_W * (rng.uniform(-0.2, 0.05) if side == 0 else rng.uniform(0.95, 1.2)))
        cv2.ellipse(image, (cx, int(_H * 0.55)), (int(_W * 0.3), int(_H * 0.5)), 0, 0, 360, colour, -1)
        cv2.circle(image, (cx, int(_H * 0.1)), int(_W * 0.14), (0.3, 0.22, 0.15), -1)
    return image


def render_person(ident: Identity, camera: Camera, pose: Pose, rng) -> np.ndarray:
    """Render ``ident`` as seen by ``camera`` in ``pose``: a uint8 RGB array of shape (128, 64, 3).

    ``rng`` supplies fabric texture, occlusion and sensor noise. Its draws do not depend on the identity,
    so two identities rendered with equally seeded generators differ only where their appearance differs.
    """
    fabric = smooth_noise(rng, _H, _W, 6, 0.05)
    occluded = rng.random() < camera.occlusion
    painter = _Painter(pose)
    (_draw_side if pose.view == "side" else _draw_frontal)(painter, ident, pose)
    background = camera.scene[:, pose.scene_offset : pose.scene_offset + _W]
    image = np.where(painter.labels[..., None] > 0, _colourise(painter, ident, fabric), background)
    if occluded:
        image = _occlude(np.ascontiguousarray(image), rng)
    image = cv2.resize(image, (CROP_W, CROP_H), interpolation=cv2.INTER_AREA)
    if camera.resolution < 0.999:
        low = (max(8, round(CROP_W * camera.resolution)), max(16, round(CROP_H * camera.resolution)))
        image = cv2.resize(
            cv2.resize(image, low, interpolation=cv2.INTER_AREA), (CROP_W, CROP_H), interpolation=cv2.INTER_LINEAR
        )
    if camera.blur > 0.05:
        image = cv2.GaussianBlur(image, (0, 0), camera.blur)
    light = camera.gain * pose.gain_jitter * (1.0 + camera.light_gradient * np.linspace(-1, 1, CROP_H))
    image = image * light[:, None, None].astype(np.float32) * np.asarray(camera.cast, np.float32)
    image = (image - 0.5) * camera.contrast + 0.5
    if camera.colour_matrix != IDENTITY_MIX:
        image = image @ np.asarray(camera.colour_matrix, np.float32).T
    if camera.gamma != 1.0:
        image = np.clip(image, 0.0, 1.0) ** np.float32(camera.gamma)
    image += rng.normal(0.0, camera.noise, image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
