"""Training data: clean cutouts plus injected contaminants with exact per-pixel truth.

For each clean cutout and each variant, a random subset of the injectable classes is drawn
(each with its own ``probability``) and injected in a physical order, then BG and BBG are
relabelled (:mod:`~mmx.synthesis.injection`). Cutouts are split into train/validation/test
by field, so no test image shares a pointing with a training image
(:mod:`~mmx.synthesis.splits`). Each image's random stream is derived from ``(seed, split,
cutout, variant)`` alone, and each injector's from that, so results do not depend on
processing order, and turning one class off does not change the draws of the others.

Modules: :mod:`~mmx.synthesis.config` (the stage's settings), :mod:`~mmx.synthesis.splits`
(field-disjoint splits, variants per cutout), :mod:`~mmx.synthesis.injection` (one image),
:mod:`~mmx.synthesis.stage` (the shard sets), :mod:`~mmx.synthesis.preview` (the PNG),
:mod:`~mmx.synthesis.demo` (fake clean cutouts) and :mod:`mmx.synthesis.contaminants` (one
injector module per contaminant family).
"""
