"""Per-class colour statistics of the 4-class training set (64 px inputs):
the numbers geoseg/demo.py paints its synthetic scene with.

    python bench/colour_stats.py [../shared/data/satellite4]
"""

import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from geoseg.training.data import decode_rgb, resize_rgb  # noqa: E402

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "satellite4")
for c in sorted(os.listdir(root)):
    fs = sorted(glob.glob(os.path.join(root, c, "*")))[::10]
    a = np.stack([resize_rgb(decode_rgb(f)[0], 64) for f in fs]).astype(float)
    print(c, "mean", a.mean((0, 1, 2)).round(1), "within", a.std((1, 2)).mean(0).round(1),
          "between", a.mean((1, 2)).std(0).round(1))
