"""Files in and out: FITS inputs and atomic FITS writes, shard sets, typed settings, PNGs."""
