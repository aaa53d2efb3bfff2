"""One way to score a model on a shard set: binned per-class curves of its logits.

Used by the ``evaluate`` stage, threshold calibration and the release script alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["operating_thresholds", "score_shards"]


def operating_thresholds(package, *, tta: str = "none") -> list[float]:
    """Default thresholds as they act on the network's raw posteriors.

    ``mmx predict`` thresholds prior-corrected probabilities (default priors of the class
    table) at the model's calibrated thresholds, else the class table's; the correction is
    a logit shift, so on raw posteriors the same operating point is
    ``sigmoid(logit(threshold) - shift)``. Scoring with these makes the test figures at
    the default thresholds describe what users get.
    """
    from mmx.model.thresholds import default_thresholds

    return default_thresholds(package.meta, package.meta.classes, raw=True, tta=tta).tolist()


def score_shards(package, shard_dir: str | Path, *, batch_size: int = 4,
                 n_bins: int = 2000, shift: np.ndarray | None = None,
                 tta: str = "none") -> dict:
    """Run ``package``'s network over every image of a shard set; return curve statistics.

    Each image is run whole and bare, its border met as the edge of a training crop, as
    ``mmx predict`` meets a frame's (:mod:`mmx.serving.tiling`, ``padding="none"``).

    Parameters
    ----------
    package : mmx.model.package.ModelPackage
        The model (eval mode) and its metadata (normalisation, classes).
    shard_dir : str or Path
        Shard set to score (whole images).
    batch_size : int
        Images per forward pass.
    n_bins : int
        Logit bins of the curves.
    shift : numpy.ndarray, optional
        Per-class logit shift (prior correction) added before scoring.
    tta : {"none", "flips", "dihedral"}
        Test-time augmentation (:mod:`mmx.model.symmetry`), as ``mmx predict --tta``.

    Returns
    -------
    dict
        :meth:`mmx.training.metrics.ClassCurves.compute` output.
    """
    from mmx.io.shards import ShardSet
    from mmx.model.symmetry import average_over_symmetries
    from mmx.sky.normalize import normalize_image
    from mmx.training.metrics import ClassCurves

    shards = ShardSet(shard_dir)
    mesh = int(package.meta.normalization.get("mesh", 64))
    # one process scores the whole set: no syncing with other ranks (after a DDP fit only
    # rank 0 calibrates, and the others have left)
    curves = ClassCurves(n_classes=len(package.meta.classes), n_bins=n_bins,
                         thresholds=operating_thresholds(package, tta=tta),
                         sync_on_compute=False)
    net = package.net.eval()

    def run(x: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(x)).numpy()
    with torch.inference_mode():
        for start in range(0, len(shards), batch_size):
            samples = [shards[i] for i in range(start, min(start + batch_size, len(shards)))]
            images = np.stack([normalize_image(s.image, mesh=mesh) for s in samples])
            logits = torch.from_numpy(average_over_symmetries(run, images[:, None], tta))
            if shift is not None:
                logits = logits + torch.as_tensor(shift, dtype=logits.dtype)[None, :, None, None]
            curves.update(logits, torch.from_numpy(np.stack([s.labels for s in samples])
                                                   .astype(np.int32)),
                          torch.from_numpy(np.stack([s.ignore for s in samples])))
    return curves.compute()
