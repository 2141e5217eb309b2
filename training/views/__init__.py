"""View generators: batched augmentations and the methods' views (APS patch subsets, PatchMix, ContrastiveCrop boxes, ADCLR query crops)."""
