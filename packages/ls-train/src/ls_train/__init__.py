"""ls-train: train, evaluate and run 3-D instance segmentation of light-sheet volumes."""
