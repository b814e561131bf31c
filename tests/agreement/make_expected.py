#!/usr/bin/env python3
"""Reference values for tests/base/test_agreement.c, written to tests/fixtures/agreement/expected.txt.

Run from the repository root:  python3 tests/agreement/make_expected.py
Needs: pip install numpy krippendorff pingouin   (make test never runs this script)

Each table is images x raters with missing cells. Reference implementations:
  - Krippendorff's alpha, interval metric: the `krippendorff` package (coincidence matrix).
  - ICC(2,1) and ICC(2,k): `pingouin.intraclass_corr` ("ICC2"/"ICC2k", in newer versions
    "ICC(A,1)"/"ICC(A,k)": two-way random, absolute agreement), on the largest complete block found here by brute force over rater
    subsets with easel's documented rule: most cells n*k (n >= 2 images, k >= 2 raters), then
    more images, then the lowest bitmask of raters (bit j = rater j).
  - Raters per image, high-disagreement count (range >= 3), per-rater offsets from the mean of
    the others, and the disagreement order: plain numpy here, written independently of the C.
"""
import csv
import importlib.metadata
import os

import krippendorff
import numpy as np
import pandas as pd
import pingouin

NA = np.nan
OUT = os.path.join("tests", "fixtures", "agreement", "expected.txt")


def tables():
    rng = np.random.RandomState(20261127)
    t = {}
    # complete, integer ratings
    truth = rng.uniform(2, 9, size=10)
    t["complete_10x3"] = np.clip(np.round(truth[:, None] + rng.normal(0, 1, (10, 3))
                                          + np.array([0.5, -0.5, 0])), 0, 10)
    # a quarter missing, half-point steps
    truth = rng.uniform(1, 9, size=12)
    m = np.round((truth[:, None] + rng.normal(0, 1.2, (12, 4))) * 2) / 2
    m[rng.uniform(size=m.shape) < 0.25] = NA
    t["missing_12x4"] = np.clip(m, 0, 10)
    # sparse: five raters, each image rated by two or three
    truth = rng.uniform(0, 10, size=9)
    m = np.full((9, 5), NA)
    for i in range(9):
        who = rng.choice(5, size=2 + i % 2, replace=False)
        m[i, who] = np.clip(np.round(truth[i] + rng.normal(0, 1.5, len(who))), 0, 10)
    t["sparse_9x5"] = m
    # one rater constant, the other not
    t["one_constant_6x2"] = np.array([[5, 2], [5, 4], [5, 7], [5, 9], [5, 5], [5, 3]], float)
    # the demo's fidelity ratings (data/multihead_ratings.csv), images in file order
    rows = list(csv.DictReader(open(os.path.join("data", "multihead_ratings.csv"))))
    imgs = list(dict.fromkeys(r["image_path"] for r in rows))
    raters = sorted({r["annotator"] for r in rows})
    m = np.full((len(imgs), len(raters)), NA)
    for r in rows:
        if r["fidelity_rating"] != "":
            m[imgs.index(r["image_path"]), raters.index(r["annotator"])] = float(r["fidelity_rating"])
    t["demo_fidelity"] = m
    return t


def largest_block(m):
    n_items, k = m.shape
    best = None  # (cells, n, -mask, mask, rows)
    for mask in range(3, 1 << k):
        cols = [j for j in range(k) if mask >> j & 1]
        if len(cols) < 2:
            continue
        rows = [i for i in range(n_items) if not np.isnan(m[i, cols]).any()]
        if len(rows) < 2:
            continue
        key = (len(rows) * len(cols), len(rows), -mask)
        if best is None or key > best[0]:
            best = (key, cols, rows)
    return best


def reference(m):
    e = {}
    rated = (~np.isnan(m)).sum(axis=1)
    has = rated > 0
    e["n_ratings"] = int(rated.sum())
    e["raters_mean"] = float(rated[has].mean())
    e["raters_min"] = int(rated[has].min())
    e["raters_max"] = int(rated[has].max())
    e["alpha"] = float(krippendorff.alpha(reliability_data=m.T, level_of_measurement="interval"))
    blk = largest_block(m)
    _, cols, rows = blk
    e["block_n"] = len(rows)
    e["block_k"] = len(cols)
    long = pd.DataFrame([(i, j, m[i, j]) for i in rows for j in cols],
                        columns=["image", "rater", "rating"])
    icc = pingouin.intraclass_corr(data=long, targets="image", raters="rater", ratings="rating")
    icc = icc.set_index("Type")["ICC"]
    # pingouin < 0.7 names them ICC2/ICC2k, newer ones ICC(A,1)/ICC(A,k) (McGraw & Wong)
    e["icc21"] = float(icc["ICC(A,1)"] if "ICC(A,1)" in icc else icc["ICC2"])
    e["icc2k"] = float(icc["ICC(A,k)"] if "ICC(A,k)" in icc else icc["ICC2k"])
    pair = [i for i in range(m.shape[0]) if rated[i] >= 2]
    ranges = {i: np.nanmax(m[i]) - np.nanmin(m[i]) for i in pair}
    sds = {i: float(np.nanstd(m[i], ddof=1)) for i in pair}
    e["high"] = sum(1 for i in pair if ranges[i] >= 3)
    e["rank"] = sorted(pair, key=lambda i: (-ranges[i], -sds[i], -rated[i], i))
    offs = []
    for j in range(m.shape[1]):
        d = []
        for i in pair:
            if np.isnan(m[i, j]):
                continue
            others = [m[i, q] for q in range(m.shape[1]) if q != j and not np.isnan(m[i, q])]
            d.append(m[i, j] - np.mean(others))
        offs.append(float(np.mean(d)) if d else NA)
    e["offsets"] = offs
    return e


def fmt(v):
    return "NA" if isinstance(v, float) and np.isnan(v) else repr(float(v))


def main():
    with open(OUT, "w") as f:
        f.write("# made by tests/agreement/make_expected.py (krippendorff %s, pingouin %s)\n"
                % (importlib.metadata.version("krippendorff"), pingouin.__version__))
        for name, m in tables().items():
            e = reference(m)
            f.write("table %s %d %d\n" % (name, m.shape[0], m.shape[1]))
            for row in m:
                f.write("row %s\n" % " ".join(fmt(v) for v in row))
            for key in ["n_ratings", "raters_min", "raters_max", "block_n", "block_k", "high"]:
                f.write("int %s %d\n" % (key, e[key]))
            for key in ["raters_mean", "alpha", "icc21", "icc2k"]:
                f.write("real %s %s\n" % (key, fmt(e[key])))
            f.write("offsets %s\n" % " ".join(fmt(v) for v in e["offsets"]))
            f.write("rank %s\n" % " ".join(str(i) for i in e["rank"]))
            f.write("end\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
