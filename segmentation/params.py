"""The tunable constants of the line finder (:class:`SegmentationParams`), shared by every stage of ``segment_page``.

The constants were tuned on the LECTAUREP training pages
(bench/segmentation_bench.py reports the validation pages).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Pixel budget of the working image: enough for thin pen strokes, small enough for ≤ 2 s/page.
WORK_PIXELS = 3_600_000

#: The line-spacing estimate's floor (working pixels): an estimate there found no period of rows (a scrap of a
#: page, a few lines at odd angles), and the page is not rescaled by it.
SPACING_FLOOR = 8.0

#: Line spacing (working pixels) below which a page is worked on enlarged: the LECTAUREP training pages
#: measure 31 (random-set-1) to 50 (riant-4) working pixels.
MIN_WORK_SPACING = 30.0

#: Line spacing (network pixels) the shipped line finder was trained at: its LECTAUREP training pages measure
#: 16.1-17.0 (dufour-1), 19.4-19.9 (random-set-1) and 21.2-21.9 (riant-4) at its scale of 0.333, a little
#: margin either side.
LEARNED_SPACING = (15.5, 22.5)


@dataclass(frozen=True)
class SegmentationParams:
    """Tunable constants of the line finder, in units of the page's line spacing unless noted."""

    work_pixels: int = WORK_PIXELS  # pixels of the working image
    # Resolution: a page whose rows are closer than this (working pixels) is worked on enlarged, within the
    # pixel budget and at most ``max_upscale`` times the scan (a low-resolution scan keeps strokes to measure).
    min_work_spacing: float | None = MIN_WORK_SPACING
    max_upscale: float = 2.5
    # Rows: density map and its ridges.
    sigma_along: float = 0.6  # Gaussian smear along the line
    sigma_across: float = 0.12  # Gaussian smear across the line
    ridge_floor: float = 0.12  # a ridge exceeds this share of the page's 99th-percentile density
    ridge_reach: float = 0.3  # a ridge is the densest point this far up and down
    min_ridge: float = 0.3  # shorter ridges are dropped
    split_tall: float = 1.3  # components taller than this are split pixelwise between rows
    # Lines: splitting, joining, attaching.
    split_gap: float = 1.5  # a horizontal gap wider than this splits a row into two lines
    wall_gap: float = 0.2  # a vertical rule splits a row only where the blank run across it is wider than this
    merge_dy: float = 0.35  # fragments whose baselines are closer than this are one line
    small_width: float = 2.0  # narrower lines are pieces that may belong to a neighbour
    attach_gap: float = 1.0  # a piece joins a line at most this far to its side
    attach_above: float = 1.1  # ... with its centre at most this far above the line's baseline
    attach_below: float = 0.5  # ... or this far below it
    # What is not writing (thresholds at the 0.5th percentile of true lines on train pages).
    min_line_ink: float = 0.05  # less ink area (in spacing²): noise
    min_ink_height: float = 0.2  # flatter (5-95 % of the ink rows): a dash, an ornament
    min_ink_width: float = 0.3  # narrower, and lower than 0.4: a dot
    max_ink_height: float = 1.35  # taller: a blot, a stamp, the leftover of a rule
    min_thickness: float = 0.088  # less mean ink per column: a lone pen stroke, an ornament...
    min_thickness_rel: float = 0.6  # ... unless the page's lines are thin too: this share of their median
    max_thickness: float = 0.35  # more: a solid blot (bold digits reach 0.34)
    min_stroke_width: float = 1.5  # wider, and ...
    max_one_stroke: float = 0.95  # ... at least this share of its columns crossing one stroke: an ornament, a dash
    # A lone pen stroke (a tick, a slash, a brace under a header) crosses one stroke along and across and is
    # elongated (ratio of the principal axes of its pixels): (share of columns and rows, ratio) pairs.
    single_stroke: tuple[tuple[float, float], ...] = ((0.9, 4.0), (0.55, 9.0))
    single_stroke_slope: float = 60.0  # ... unless steeper than this (degrees): a one
    min_contrast: float = 0.6  # ink contrast / the page's writing contrast, below: pencil, bleed-through
    min_background: float = 0.78  # median gray around the ink / paper gray, below: shadow, page edge
    # Ditto marks ("), written in table cells and transcribed as lines, are smaller than any word.
    ditto_height: tuple[float, float] = (0.15, 0.45)  # ink height (5-95 % of its rows)
    ditto_stroke: float = 0.006  # a stroke has at least this ink area (spacing²) ...
    ditto_stroke_height: float = 0.12  # ... is at least this tall ...
    ditto_stroke_width: float = 0.3  # ... and at most this wide
    # Round stamps (the notary's, over the header) are no text.
    stamp_radius: tuple[float, float] = (1.5, 5.0)  # radius range searched
    stamp_share: float = 0.5  # a row with at least this share of its ink inside a stamp is dropped
    # ... unless the learned finder is sure of it: its band (90th percentile) and region (mean) probabilities
    # over the row's ink reach these (the network, trained on lines without the stamps' own lettering, sees the
    # text a stamp was pressed over). Off: training pages 1::4 P/R 0.9364/0.9416, validation 0.9491/0.9362;
    # (0.8, 0.8): 0.9352/0.9432, 0.9487/0.9377; (0.9, 0.9): 0.9362/0.9419, 0.9491/0.9372; band 0.9 alone
    # 0.9349/0.9430, 0.9482/0.9377.
    stamp_spare: tuple[float, float] | None = (0.8, 0.8)
    # Outline and baseline.
    above: float = 0.65  # the polygon reaches at least this far above the baseline
    below: float = 0.2  # ... and this far below it
    reach: float = 0.95  # ink further from the baseline does not grow the polygon
    pad_top: float = 0.4  # margin above the ink
    pad_bottom: float = 0.25  # ... below it
    pad_left: float = 0.25  # ... before the line's first ink
    pad_right: float = 0.15  # ... after its last ink
    bin_width: float = 0.4  # width of the outline's steps and of the baseline fit's bins
    word_gap: float = 0.15  # a blank run wider than this separates words
    stack_gap: float = 0.3  # a blank band across a row taller than this cuts it in two (two rows, one ridge)
    label_gap: float = 0.12  # a word over the middle of a longer one, this far above it, is a line (a header's "de")
    label_width: float = 0.3  # ... when at least this wide, and the longer word runs this far past both its ends
    label_size: float = 2.5  # its vertical margins are those of a line spacing this many times its ink height
    cell_reach: float = 0.3  # rules are extended this far at both ends when they close the table's cells
    # The learned line finder (segmentation.learned): None uses the rules above instead.
    line_model: str | None = None
    # The line spacing (network pixels) of the pages the network was trained on, 10th to 90th percentile: a page
    # outside it is shown to the network rescaled to the nearer end, so a scan at half or twice the resolution
    # gives the network the lines it knows. None: always the network's own scale of the scan.
    learned_spacing: tuple[float, float] | None = LEARNED_SPACING
    learned_filter: bool = True  # also drop what does not look like writing (dots, dashes, pencil)
    learned_enough_ink: float = 0.2  # ... but a line with this much ink (spacing²) is never too small or odd
    # ... and its background test is looser: the halo of a small printed header (DATES, DROITS.) is gray.
    learned_min_background: float = 0.7
    # The network's own confidence, over the row's ink: the 90th percentile of its band probability and the
    # mean of its region probability. A row it is sure of passes the size and contrast tests (a lone "M",
    # a short number, a margin note in paler ink); one it barely sees is dropped (a smudge, a rule's remnant).
    learned_sure: tuple[float, float] = (0.9, 0.9)
    learned_min_band: float = 0.8
    learned_faint_ink: float = 1.0  # ... but a row with this much ink (spacing²) is left to the rules' tests
    # A basin's ink is split into lines at column rules and at blank runs wider than this: the network has
    # already parted the lines it sees. Training pages 1::4 P/R 0.9314/0.9391 at the rules' 1.5 ->
    # 0.9364/0.9416 at 2.5 (3, 5 and 100 the same; 2.0 half-way); validation unchanged (0.9491/0.9362).
    learned_split_gap: float = 3.0
    # A page whose line-finder confidence (segmentation.lines.page_confidence) is below this is flagged. The
    # validation pages of every corpus measure 0.82-0.99 (at 1x and 0.5x); a blank, a noise, a blurred-out page 0,
    # a register page turned 90 degrees 0.32.
    low_confidence: float = 0.6
    learned_outline: bool = True  # a line's polygon is its basin's region, not its padded ink outline
    learned_clip: float | None = 2.0  # ... cut to its ink's box padded this many times the ink outline's pads
    # Seeds: band components above this probability, and components above ``band_floor`` that hold none (a
    # faint line). 0.7 alone: validation P/R 0.9418/0.9271, training pages 1::4 0.9339/0.9391; 0.8 alone
    # split more joined lines (0.9396/0.9307) but lost the only line of a small register fragment
    # (tests/reliability); 0.8 over a 0.7 floor: 0.9406/0.9317 (end-to-end gap +3.06 -> +2.40 points),
    # training 0.9319/0.9396 (floor 0.6 and threshold 0.85 / 0.9 within a line of it on both).
    band_threshold: float = 0.8
    band_floor: float | None = 0.7
    region_threshold: float = 0.5
    min_band_area: int = 4  # band components smaller than this (network pixels) seed no line
    min_line_pixels: int = 8  # lines with less ink than this (working pixels) are dropped
