"""Page segmentation: loading and validation, binarization, deskew, rules, lines and words, crops."""
