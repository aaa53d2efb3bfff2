"""The sky of an image: mesh background and noise maps, normalisation, BG/BBG labelling."""
