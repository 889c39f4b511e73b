"""Preview and time the synthetic register lines: a PNG grid of samples with their texts, and lines/s.

    python bench/synthetic_preview.py --out synthetic.png [--n 40] [--real 10] [--quick]

The grid shows each crop (48 px high, as the recognizer gets it) with its
label and font underneath; ``--real N`` adds N real training crops at the end
(from the line cache) for a side-by-side look. The throughput is measured on
one core (OpenCV and BLAS threads pinned to 1), as the trainer calls it.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from ocr.corpus import DEFAULT_DATA  # noqa: E402
from ocr.synthetic import SyntheticLines  # noqa: E402

LABEL_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/opentype/urw-base35/NimbusSans-Regular.otf",
)


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _label_font(size: int = 13) -> ImageFont.ImageFont:
    for path in LABEL_FONTS:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()


def grid(samples: list[tuple[np.ndarray, str, str]], columns: int = 2, col_width: int = 640) -> np.ndarray:
    """Return a uint8 image: each crop (cut at ``col_width`` px) above its text and caption, in columns."""
    font = _label_font()
    cell_h = 48 + 36
    rows = (len(samples) + columns - 1) // columns
    canvas = Image.new("L", (columns * (col_width + 16), rows * cell_h), 255)
    draw = ImageDraw.Draw(canvas)
    for i, (img, text, caption) in enumerate(samples):
        col, row = divmod(i, rows)
        x, y = col * (col_width + 16), row * cell_h
        canvas.paste(Image.fromarray(img[:, :col_width]), (x, y + 2))
        draw.text((x, y + 51), text[:90], font=font, fill=0)
        draw.text((x, y + 66), caption, font=_label_font(11), fill=110)
    return np.asarray(canvas)


def main() -> None:
    """Write the preview grid and print the generator's throughput."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="PNG file to write")
    ap.add_argument("--n", type=int, default=40, help="synthetic samples in the grid")
    ap.add_argument("--real", type=int, default=0, help="real training crops appended for comparison")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder (names/, lectaurep/)")
    ap.add_argument("--cache", type=Path, default=Path(".cache/lines-all-h48.pkl"), help="real line cache (for --real)")
    ap.add_argument("--quick", action="store_true", help="time 300 lines instead of 3000")
    args = ap.parse_args()
    cv2.setNumThreads(1)

    t0 = time.perf_counter()
    gen = SyntheticLines(args.data / "names")
    t_init = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    samples = []
    for _ in range(args.n):
        img, text, face = gen.sample(rng)
        samples.append((img, text, f"{face.path.name} ({face.style}) {img.shape[1]}x{img.shape[0]}"))
    if args.real:
        from ocr.corpus import load_line_cache

        real = [s for s in load_line_cache(args.data, args.cache) if s.split == "train"]
        for i in np.random.default_rng(args.seed + 1).choice(len(real), args.real, replace=False):
            s = real[int(i)]
            samples.append((s.image, s.text, f"REAL {s.volume} {s.image.shape[1]}x{s.image.shape[0]}"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), grid(samples))

    n = 300 if args.quick else 3000
    # Steady state, as in a training run: every face's metrics measured, common sizes loaded.
    t0 = time.perf_counter()
    for face in gen.faces:
        gen.renderer.metrics(face)
    gen(np.random.default_rng(args.seed + 2), 200)
    t_warm = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    lines = gen(np.random.default_rng(args.seed + 3), n)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    lens = np.array([len(t) for _, t in lines])
    widths = np.array([im.shape[1] for im, _ in lines])
    styles = {s: sum(f.style == s for f in gen.faces) for s in ("script", "print", "plain")}

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores (timed on 1 thread; load average {os.getloadavg()[0]:.1f})")
    print(f"fonts: {len(gen.faces)} usable ({', '.join(f'{k} {v}' for k, v in styles.items())})")
    print(f"| {'measure':34s} | {'value':>10s} |")
    print(f"|{'-' * 36}|{'-' * 12}|")
    rows = [
        ("set-up (names, vocabulary, fonts) s", f"{t_init:.2f}"),
        ("warm-up (font metrics, 200 lines) s", f"{t_warm:.2f}"),
        ("lines generated", f"{n}"),
        ("lines/s (wall clock)", f"{n / dt:.0f}"),
        ("lines/s (CPU time of this process)", f"{n / cpu:.0f}"),
        ("ms CPU per line", f"{1000 * cpu / n:.2f}"),
        ("text length median / p90 / max", f"{np.median(lens):.0f}/{np.percentile(lens, 90):.0f}/{lens.max()}"),
        ("crop width median / p90 px", f"{np.median(widths):.0f}/{np.percentile(widths, 90):.0f}"),
        ("px per char (median)", f"{np.median(widths / lens):.1f}"),
    ]
    for k, v in rows:
        print(f"| {k:34s} | {v:>10s} |")
    print(f"grid: {args.out}")


if __name__ == "__main__":
    main()
