"""Training data: clean cutouts plus injected contaminants with exact per-pixel truth.

For each clean cutout and each variant, a random subset of the injectable classes is
drawn (each with its own ``probability``) and their injectors run in a physical order:
sky-like light first (nebulosity, fringes, persistence), then bright stars with spikes
and saturated stars, trails, cosmic rays and hot defects, then the full-well pass
(:func:`mmx.synthesis.contaminants.saturate`: anything now above the record's ``saturate``
bleeds and is labelled SAT), then the low-response defects and the overscan strip,
which replace what was there. Finally BG and BBG are relabelled on the new image with
the clean stage's rule (:func:`mmx.sky.background.label_background`), never on a pixel
that carries a contaminant.

Cutouts are split into train/validation/test by *field* (``record["field"]`` if the
clean stage provides it, else the instrument and exposure), so no test image shares a
pointing with a training image; with too few fields the split falls back to CCDs,
then to cutouts (with a warning). Each split has its own random stream; each image's
stream is derived from ``(seed, split, cutout, variant)`` alone, and each injector's
from that, so results do not depend on processing order, and turning one class off
does not change the draws of the others.

Modules: :mod:`~mmx.synthesis.config` (the stage's settings), :mod:`~mmx.synthesis.splits`
(field-disjoint splits, variants per cutout), :mod:`~mmx.synthesis.injection` (one image),
:mod:`~mmx.synthesis.stage` (the shard sets), :mod:`~mmx.synthesis.preview` (the PNG),
:mod:`~mmx.synthesis.demo` (fake clean cutouts) and :mod:`mmx.synthesis.contaminants` (one
injector module per contaminant family).
"""
