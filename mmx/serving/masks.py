"""Output modes of ``mmx predict`` and the writers that fill their arrays tile by tile.

Every writer owns one preallocated array for one image and receives, tile by tile, the
prior-corrected *logits* of the requested classes only; it converts them to its own type at
once, so no full-size float plane of an unrequested class (or any float plane at all, for
the bit mask) ever exists.

Layouts (one FITS image HDU per input image HDU)
------------------------------------------------
``prob``
    float32 cube ``(K + 1, H, W)``: the probability of each requested class, then a last
    ``NODATA`` plane (1 where the input pixel had no valid value: NaN, Inf or BLANK).
``prob8``
    uint8 cube ``(K + 1, H, W)`` holding ``q = round(255 p)`` with ``BSCALE = 1/255`` and
    ``BZERO = 0`` in the header, so FITS readers (astropy included) return ``p`` quantised
    to steps of 1/255 (error at most 1/510); ``NODATA`` is 255 (= 1.0) or 0.
``binary``
    uint8 cube ``(K + 1, H, W)`` of 0/1: 1 where the probability is at least the class's
    threshold; last plane ``NODATA``.
``bitmask``
    int16 image ``(H, W)`` (:data:`mmx.classes.BITMASK_DTYPE`, as MaxiMask writes it): the OR
    of the MaxiMask bit (:attr:`mmx.classes.ContaminantClass.bit`)
    of every requested class whose probability reaches its threshold, the same values as
    MaxiMask's single mask (BG has no bit); pixels with no valid input value hold only
    :data:`NODATA_BIT` (8192, unused by MaxiMask).

Plane ``k`` (1-based) is named by the header key ``PLANEk``; bits by ``BIT_<abbr>``. At
no-data pixels every class plane is 0: a blank pixel is never reported as a contaminant.
A probability ``p`` reaches threshold ``t`` when ``logit(p) >= logit(t)``, compared on the
logits (exact at ``t = 0``: everything, and ``t = 1``: nothing).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

import numpy as np

from mmx.classes import BITMASK_DTYPE, ContaminantClass, by_abbr
from mmx.errors import ConfigError
from mmx.model.priors import logit

__all__ = [
    "OutputMode",
    "NODATA_BIT",
    "NODATA_PLANE",
    "PROB8_SCALE",
    "MaskWriter",
    "make_writer",
    "plane_names",
    "binary_planes",
]

NODATA_BIT = 1 << 13  #: bit-mask value of pixels with no valid input value
NODATA_PLANE = "NODATA"  #: name of the last plane of the cube modes
PROB8_SCALE = 1.0 / 255.0  #: BSCALE of the ``prob8`` mode


class OutputMode(enum.StrEnum):
    """What ``mmx predict`` writes for each image (see the module docstring)."""

    PROB = "prob"
    PROB8 = "prob8"
    BINARY = "binary"
    BITMASK = "bitmask"


def plane_names(mode: OutputMode | str, classes: Sequence[ContaminantClass]) -> list[str]:
    """Names of the output planes in order (class abbreviations then ``NODATA``).

    Empty for the bit mask, which has no planes.
    """
    if OutputMode(mode) is OutputMode.BITMASK:
        return []
    return [c.abbr for c in classes] + [NODATA_PLANE]


class MaskWriter:
    """Fills the output array of one image from tiles of logits.

    Parameters
    ----------
    mode : OutputMode or str
        Output mode.
    shape : tuple of int
        ``(H, W)`` of the image.
    classes : sequence of ContaminantClass
        Classes of the logits handed to :meth:`write`, in order.
    thresholds : mapping, optional
        Probability threshold per abbreviation for ``binary``/``bitmask`` (defaults from
        the class table).
    candidate_classes : sequence of str
        Classes whose pixels at or above ``candidate_fraction`` of their threshold are
        kept too (:attr:`candidates`, for the cleaning mask of :mod:`mmx.serving.inpaint`).
    candidate_fraction : float
        That fraction.

    Attributes
    ----------
    array : numpy.ndarray
        The output, ``(K + 1, H, W)`` or ``(H, W)``.
    candidates : dict
        ``{abbr: bool (H, W)}`` of ``candidate_classes``.
    """

    def __init__(
        self,
        mode: OutputMode | str,
        shape: tuple[int, int],
        classes: Sequence[ContaminantClass],
        *,
        thresholds: Mapping[str, float] | None = None,
        candidate_classes: Sequence[str] = (),
        candidate_fraction: float = 1.0,
    ) -> None:
        self.mode = OutputMode(mode)
        self.classes = tuple(classes)
        if not self.classes:
            raise ConfigError("no output class selected; expected at least one class")
        thresholds = dict(thresholds or {})
        self.thresholds = {c.abbr: float(thresholds.get(c.abbr, c.threshold)) for c in self.classes}
        # float32, as the logits they are compared with (the same rounding on every path)
        self._logit_thr = np.array([logit(self.thresholds[c.abbr]) for c in self.classes],
                                   dtype=np.float32)
        h, w = (int(s) for s in shape)
        k = len(self.classes)
        self._candidate_index = [i for i, c in enumerate(self.classes)
                                 if c.abbr in candidate_classes]
        self._candidate_thr = np.array([
            logit(candidate_fraction * self.thresholds[self.classes[i].abbr])
            for i in self._candidate_index], dtype=np.float32)
        self.candidates = {self.classes[i].abbr: np.zeros((h, w), dtype=bool)
                           for i in self._candidate_index}
        if self.mode is OutputMode.BITMASK:
            no_bit = [c.abbr for c in self.classes if not c.bit]
            if len(no_bit) == k:
                raise ConfigError(f"class(es) {', '.join(no_bit)} have no bit in the MaxiMask bit "
                                  "mask; choose --mode binary/prob or other classes")
            self.array = np.zeros((h, w), dtype=BITMASK_DTYPE)
        elif self.mode is OutputMode.PROB:
            self.array = np.zeros((k + 1, h, w), dtype=np.float32)
        else:
            self.array = np.zeros((k + 1, h, w), dtype=np.uint8)

    def write(self, logits: np.ndarray, rows: slice, cols: slice) -> None:
        """Store one tile.

        Parameters
        ----------
        logits : numpy.ndarray
            float32 ``(K, h, w)`` prior-corrected logits of ``classes``.
        rows, cols : slice
            Where the tile goes in the image.
        """
        from scipy.special import expit

        logits = np.asarray(logits, dtype=np.float32)
        for i, thr in zip(self._candidate_index, self._candidate_thr, strict=True):
            self.candidates[self.classes[i].abbr][rows, cols] = logits[i] >= thr
        mode = self.mode
        if mode is OutputMode.BITMASK:
            hit = logits >= self._logit_thr[:, None, None]
            acc = np.zeros(logits.shape[1:], dtype=BITMASK_DTYPE)
            for k, cls in enumerate(self.classes):
                if cls.bit:  # distinct powers of two: adding is OR-ing
                    np.add(acc, BITMASK_DTYPE.type(cls.bit), out=acc, where=hit[k])
            self.array[rows, cols] = acc
            return
        k = len(self.classes)
        dst = self.array[:k, rows, cols]
        if mode is OutputMode.PROB:
            expit(logits, out=dst)
        elif mode is OutputMode.PROB8:
            prob = expit(logits)
            prob *= np.float32(255.0)
            dst[...] = np.rint(prob, out=prob)
        else:
            dst[...] = logits >= self._logit_thr[:, None, None]

    def flag_nodata(self, bad: np.ndarray) -> None:
        """Mark pixels with no valid input value (and clear every class there)."""
        if not bad.any():
            return
        for plane in self.candidates.values():
            plane[bad] = False
        if self.mode is OutputMode.BITMASK:
            self.array[bad] = NODATA_BIT
            return
        k = len(self.classes)
        for plane in self.array[:k]:
            plane[bad] = 0
        self.array[k][bad] = 1.0 if self.mode is OutputMode.PROB else (
            255 if self.mode is OutputMode.PROB8 else 1)

    def header_cards(self) -> list[tuple[str, object, str]]:
        """FITS cards that describe the array: scaling, plane names, bits, thresholds."""
        cards: list[tuple[str, object, str]] = [
            ("MMXMODE", self.mode.value, "mmx output mode: prob, prob8, binary or bitmask"),
        ]
        if self.mode is OutputMode.PROB8:
            cards += [("BSCALE", PROB8_SCALE, "probability = stored value / 255"),
                      ("BZERO", 0.0, "no offset")]
        if self.mode is OutputMode.BITMASK:
            for cls in self.classes:
                if cls.bit:
                    cards.append((f"BIT_{cls.abbr}", cls.bit, f"bit value of {cls.name}"))
            cards.append(("BIT_NODA", NODATA_BIT, "bit value of pixels with no valid input"))
        else:
            names = plane_names(self.mode, self.classes)
            for i, name in enumerate(names, start=1):
                what = "no valid input value" if name == NODATA_PLANE else by_abbr(name).name
                cards.append((f"PLANE{i}", name, what))
        if self.mode in (OutputMode.BINARY, OutputMode.BITMASK):
            for cls in self.classes:
                cards.append((f"THR_{cls.abbr}", self.thresholds[cls.abbr],
                              f"probability threshold of {cls.abbr}"))
        return cards

    def binary_planes(self) -> dict[str, np.ndarray]:
        """Boolean mask of each class (probability >= threshold), for previews and cleaning."""
        return binary_planes(self.array, self.mode, self.classes, thresholds=self.thresholds)


def binary_planes(
    array: np.ndarray,
    mode: OutputMode | str,
    classes: Sequence[ContaminantClass],
    *,
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Boolean mask per class from an output array of any mode.

    Parameters
    ----------
    array : numpy.ndarray
        A writer's array (or the data of an output HDU, physical values for ``prob8``
        read through a FITS reader are also accepted).
    mode : OutputMode or str
    classes : sequence of ContaminantClass
        Classes of the array's planes, in order.
    thresholds : mapping, optional
        Thresholds for the probability modes (defaults from the class table).

    Returns
    -------
    dict
        ``{abbr: bool array (H, W)}``; the bit mask gives no entry for BG (no bit).
    """
    mode = OutputMode(mode)
    thresholds = dict(thresholds or {})
    out: dict[str, np.ndarray] = {}
    for k, cls in enumerate(classes):
        thr = float(thresholds.get(cls.abbr, cls.threshold))
        if mode is OutputMode.BITMASK:
            if cls.bit:
                out[cls.abbr] = (array & cls.bit) != 0
        elif mode is OutputMode.BINARY:
            out[cls.abbr] = array[k] != 0
        elif mode is OutputMode.PROB8 and array.dtype == np.uint8:
            out[cls.abbr] = array[k].astype(np.float32) * np.float32(PROB8_SCALE) >= thr
        else:
            out[cls.abbr] = array[k] >= thr
    return out


def make_writer(
    mode: OutputMode | str,
    shape: tuple[int, int],
    classes: Sequence[ContaminantClass],
    *,
    thresholds: Mapping[str, float] | None = None,
    candidate_classes: Sequence[str] = (),
    candidate_fraction: float = 1.0,
) -> MaskWriter:
    """Create the :class:`MaskWriter` of ``mode`` for an image of ``shape``.

    Raises
    ------
    ConfigError
        On an unknown mode, no class, or a bit mask of classes without bits (BG only).
    """
    try:
        mode = OutputMode(mode)
    except ValueError:
        raise ConfigError(f"output mode must be one of "
                          f"{', '.join(m.value for m in OutputMode)}, got {mode!r}") from None
    return MaskWriter(mode, shape, classes, thresholds=thresholds,
                      candidate_classes=candidate_classes,
                      candidate_fraction=candidate_fraction)
