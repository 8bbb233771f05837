"""Tests of reports.stats (and reports.compare, which reads cells for it): exactness against
pycocotools and the bootstrap's behaviour."""

from __future__ import annotations

import contextlib
import io
import json
import pickle

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from reports import compare
from reports import stats as bs
from reports.stats import records as bsr

CATS = [1, 2, 3, 5, 8]  # gaps, like COCO's ids


def make_gt(n_img: int, seed: int, *, empty_frac: float = 0.15, crowd_frac: float = 0.08,
            mean_gt: float = 4.0, cats: list[int] = CATS) -> dict:
    """Small COCO gt: images without gt, crowd boxes, sizes across small/medium/large."""
    rng = np.random.default_rng(seed)
    images, anns, aid = [], [], 1
    for i in range(n_img):
        images.append({"id": 10 * i + 7, "width": 400, "height": 300})
        n = 0 if rng.random() < empty_frac else int(rng.poisson(mean_gt))
        for _ in range(n):
            side = float(np.exp(rng.uniform(np.log(6), np.log(250))))
            bw, bh = min(side * rng.uniform(0.6, 1.6), 399.0), min(side, 299.0)
            x, y = rng.uniform(0, 400 - bw), rng.uniform(0, 300 - bh)
            anns.append({"id": aid, "image_id": 10 * i + 7, "category_id": int(rng.choice(cats)),
                         "bbox": [x, y, bw, bh], "area": bw * bh,
                         "iscrowd": int(rng.random() < crowd_frac)})
            aid += 1
    return {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": str(c)} for c in cats]}


def make_dets(gt: dict, seed: int, *, sigma: float = 0.1, n_fp: int = 6, fp_score: float = 0.3,
              cats: list[int] | None = None) -> list[dict]:
    """Jittered gt copies (some missed, some duplicated) plus clutter; continuous scores."""
    rng = np.random.default_rng(seed)
    cats = cats or [c["id"] for c in gt["categories"]]
    out = []
    by_img: dict[int, list] = {}
    for a in gt["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    for im in gt["images"]:
        for a in by_img.get(im["id"], []):
            for _ in range(int(rng.integers(0, 3))):
                x, y, w, h = a["bbox"]
                j = rng.normal(0, sigma, 4) * [w, h, w, h]
                out.append({"image_id": im["id"], "category_id": a["category_id"],
                            "bbox": [x + j[0], y + j[1], max(w + j[2], 1), max(h + j[3], 1)],
                            "score": float(rng.uniform(0.3, 1.0))})
        for _ in range(int(rng.integers(0, n_fp + 1))):
            w, h = rng.uniform(5, 200, 2)
            out.append({"image_id": im["id"], "category_id": int(rng.choice(cats)),
                        "bbox": [rng.uniform(0, 400 - w), rng.uniform(0, 300 - h), w, h],
                        "score": float(rng.uniform(0, fp_score))})
    return out


def coco_stats(gt: dict, dets: list[dict]) -> np.ndarray:
    coco = bs.load_coco_gt(gt)
    ev = COCOeval(coco, bsr._load_results(coco, dets), "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def assert_matches_pycocotools(mine: dict[str, float], stats: np.ndarray) -> None:
    for m, v in mine.items():
        assert v == pytest.approx(stats[bsr._STATS_INDEX[m]], abs=1e-9), m


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_identity_accumulate_equals_pycocotools(seed: int) -> None:
    gt = make_gt(40, seed)
    # category 8 gets gt but never a detection; 5 gets dets only in some images
    dets = [d for d in make_dets(gt, seed + 100) if d["category_id"] != 8]
    assert any(a["iscrowd"] for a in gt["annotations"])
    assert any(a["category_id"] == 8 for a in gt["annotations"])
    rec = bs.evaluate_records(bs.load_coco_gt(gt), dets)
    mine = bs.accumulate(rec, None, bs.ALL_METRICS)
    assert_matches_pycocotools(mine, coco_stats(gt, dets))
    # explicit weights of one are the same thing
    assert bs.accumulate(rec, np.ones(rec.n_images, int), bs.ALL_METRICS) == mine


def test_identity_with_score_ties_and_gt_only_category() -> None:
    gt = make_gt(30, 5)
    gt["categories"].append({"id": 9, "name": "9"})  # a category with neither gt nor dets
    dets = make_dets(gt, 6)
    for d in dets:  # coarse scores: many ties across and within images
        d["score"] = round(d["score"], 1)
    rec = bs.evaluate_records(gt, dets)
    assert_matches_pycocotools(bs.accumulate(rec, None, bs.ALL_METRICS), coco_stats(gt, dets))


def test_recall_lut_matches_float_comparison() -> None:
    """count(tp) equals pycocotools' float comparison rc = tp / n >= thr, ties included."""
    thr = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
    n = np.arange(1, 700, dtype=float)
    off, table = bsr._recall_lut(n, thr)
    for k in range(len(n)):
        tp = np.arange(int(n[k]) + 1)
        want = np.searchsorted(thr, tp / n[k], side="right")
        got = table[off[k] + tp] - len(thr) * k
        np.testing.assert_array_equal(got, want)


def test_no_detections() -> None:
    gt = make_gt(10, 7)
    rec = bs.evaluate_records(gt, [])
    mine = bs.accumulate(rec, None, bs.ALL_METRICS)
    assert_matches_pycocotools(mine, coco_stats(gt, []))
    assert mine["AP"] == 0.0


def duplicate(gt: dict, dets: list[dict], w: np.ndarray) -> tuple[dict, list[dict]]:
    """Physically replace image i by w[i] copies (new ids, copies adjacent in id order)."""
    imgs, anns, out = [], [], []
    by_a: dict[int, list] = {}
    by_d: dict[int, list] = {}
    for a in gt["annotations"]:
        by_a.setdefault(a["image_id"], []).append(a)
    for d in dets:
        by_d.setdefault(d["image_id"], []).append(d)
    ids = sorted(im["id"] for im in gt["images"])
    aid = 1
    for i, iid in enumerate(ids):
        for c in range(int(w[i])):
            nid = iid * 1000 + c
            imgs.append({"id": nid, "width": 400, "height": 300})
            for a in by_a.get(iid, []):
                anns.append(dict(a, id=aid, image_id=nid))
                aid += 1
            out += [dict(d, image_id=nid) for d in by_d.get(iid, [])]
    return {"images": imgs, "annotations": anns, "categories": gt["categories"]}, out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weights_equal_duplicated_images(seed: int) -> None:
    gt = make_gt(30, seed)
    dets = make_dets(gt, seed + 50)
    rec = bs.evaluate_records(gt, dets)
    rng = np.random.default_rng(seed)
    w = np.bincount(rng.integers(0, 30, 30), minlength=30)
    assert (w == 0).any() and (w >= 2).any()
    gt2, dets2 = duplicate(gt, dets, w)
    assert_matches_pycocotools(bs.accumulate(rec, w, bs.ALL_METRICS), coco_stats(gt2, dets2))


def test_workers_give_same_records() -> None:
    gt = make_gt(30, 11)
    dets = make_dets(gt, 12)
    r1 = bs.evaluate_records(gt, dets, workers=1)
    r2 = bs.evaluate_records(gt, dets, workers=2)
    w = np.bincount(np.random.default_rng(0).integers(0, 30, 30), minlength=30)
    assert bs.accumulate(r1, w, bs.ALL_METRICS) == bs.accumulate(r2, w, bs.ALL_METRICS)
    # evaluating only the area range the metrics need gives the same numbers
    r3 = bs.evaluate_records(gt, dets, metrics=("AP", "AR100"), workers=2)
    assert set(r3.areas) == {0}
    assert bs.accumulate(r3, w, ("AP", "AR100")) == bs.accumulate(r1, w, ("AP", "AR100"))
    with pytest.raises(ValueError):
        bs.accumulate(r3, w, ("APs",))
    with pytest.raises(ValueError):
        bs.accumulate(r1, w + 0.5)
    # records pickle (e.g. to cache them) without their work buffers
    r4 = pickle.loads(pickle.dumps(r1))
    assert bs.accumulate(r4, w, bs.ALL_METRICS) == bs.accumulate(r1, w, bs.ALL_METRICS)
    # bootstrap split over forked workers: identical samples
    rb = bs.evaluate_records(gt, make_dets(gt, 13))
    b1 = bs.paired_bootstrap(r1, rb, n_boot=40, seed=3, metrics=bs.ALL_METRICS)
    b2 = bs.paired_bootstrap(r1, rb, n_boot=40, seed=3, metrics=bs.ALL_METRICS, workers=2)
    for m in bs.ALL_METRICS:
        np.testing.assert_array_equal(b1.samples[m], b2.samples[m])


def test_identical_detections_give_zero_interval() -> None:
    gt = make_gt(60, 1)
    dets = make_dets(gt, 2)
    coco = bs.load_coco_gt(gt)
    r = bs.bootstrap_detections(coco, dets, [dict(d) for d in dets], n_boot=200,
                                metrics=bs.ALL_METRICS)
    for d in r.deltas.values():
        assert (d.point, d.lo, d.hi) == (0.0, 0.0, 0.0)
        assert not d.excludes_zero


def test_strict_improvement_interval_above_zero() -> None:
    gt = make_gt(80, 3, crowd_frac=0.0)
    good = make_dets(gt, 4, sigma=0.03, n_fp=0)
    # baseline: same boxes plus, on every image with gt, a high-scored false positive
    # per gt box (worse ranking) and worse localisation
    rng = np.random.default_rng(5)
    bad = [dict(d, bbox=[v + rng.normal(0, 0.08) * d["bbox"][2 + k % 2]
                         for k, v in enumerate(d["bbox"])]) for d in good]
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        bad.append({"image_id": a["image_id"], "category_id": a["category_id"],
                    "bbox": [(x + w + 5) % 350, (y + h + 5) % 250, w, h], "score": 0.99})
    r = bs.bootstrap_detections(gt, good, bad, n_boot=300, seed=1)
    for d in r.deltas.values():
        assert d.lo > 0 and d.excludes_zero and d.lo <= d.point <= d.hi


def test_interval_narrows_with_more_images() -> None:
    def width(n: int) -> float:
        gt = make_gt(n, 21)
        r = bs.bootstrap_detections(gt, make_dets(gt, 22, sigma=0.05), make_dets(gt, 23),
                                    n_boot=300, seed=0, metrics=("AP",))
        return r.deltas["AP"].hi - r.deltas["AP"].lo

    w50, w800 = width(50), width(800)
    assert w800 < 0.6 * w50  # ~ 1/sqrt(16) = 0.25 expected


def test_deterministic_for_seed() -> None:
    gt = make_gt(50, 31)
    rv = bs.evaluate_records(gt, make_dets(gt, 32, sigma=0.05))
    rb = bs.evaluate_records(gt, make_dets(gt, 33))
    a = bs.paired_bootstrap(rv, rb, n_boot=100, seed=7)
    b = bs.paired_bootstrap(rv, rb, n_boot=100, seed=7)
    c = bs.paired_bootstrap(rv, rb, n_boot=100, seed=8)
    assert a.to_dict() == b.to_dict()
    assert np.array_equal(a.samples["AP"], b.samples["AP"])
    assert not np.array_equal(a.samples["AP"], c.samples["AP"])
    lo90 = bs.paired_bootstrap(rv, rb, n_boot=100, seed=7, level=0.9).deltas["AP"]
    assert a.deltas["AP"].lo <= lo90.lo <= lo90.hi <= a.deltas["AP"].hi


def test_bootstrap_cells(tmp_path) -> None:
    gt = make_gt(40, 41)
    (tmp_path / "ann.json").write_text(json.dumps(gt))
    for name, seed in (("retinanet__sepc__s0", 42), ("retinanet__baseline__s0", 43)):
        cell = tmp_path / "store" / name
        cell.mkdir(parents=True)
        (cell / "detections.bbox.json").write_text(json.dumps(make_dets(gt, seed)))
        (cell / "result.json").write_text(json.dumps({"ann_file": str(tmp_path / "ann.json")}))
    r = compare.bootstrap_cells(tmp_path / "store/retinanet__sepc__s0",
                           tmp_path / "store/retinanet__baseline__s0", n_boot=50)
    direct = bs.bootstrap_detections(gt, make_dets(gt, 42), make_dets(gt, 43), n_boot=50)
    assert r.to_dict() == direct.to_dict()
    assert set(r.to_frame()["metric"]) == set(bs.DEFAULT_METRICS)


def test_the_seeds_rule_is_welch_when_the_images_add_nothing() -> None:
    """reports.stats.claims' rule "seeds" with no image-sampling spread is Welch's interval."""
    from scipy import stats

    from reports.stats.claims import difference_interval

    base, var = [36.1, 36.4, 35.9], [37.0, 37.6, 37.2, 37.5]
    iv = difference_interval(var, base, np.zeros(50))
    t = stats.ttest_ind(var, base, equal_var=False)
    ci = t.confidence_interval(0.95)
    assert iv.rule == "seeds" and iv.point == pytest.approx(np.mean(var) - np.mean(base))
    assert (iv.lo, iv.hi) == pytest.approx((ci.low, ci.high)) and iv.claimed
    assert iv.se_train == pytest.approx(np.sqrt(np.var(var, ddof=1) / 4 + np.var(base, ddof=1) / 3))


def test_cached_records_round_trip_and_are_used(tmp_path) -> None:
    """A cell's eval_records.npz (written by the job) gives the same records as evaluating its
    detections, and bootstrap_cells then resamples from it without evaluating again."""
    gt = make_gt(40, 51)
    (tmp_path / "ann.json").write_text(json.dumps(gt))
    cells = {}
    for name, seed in (("retinanet__sepc__s0", 52), ("retinanet__baseline__s0", 53)):
        cell = cells[name] = tmp_path / "store" / name
        cell.mkdir(parents=True)
        (cell / "detections.bbox.json").write_text(json.dumps(make_dets(gt, seed)))
        (cell / "result.json").write_text(json.dumps({"ann_file": str(tmp_path / "ann.json")}))
    a, b = cells["retinanet__sepc__s0"], cells["retinanet__baseline__s0"]
    fresh = compare.bootstrap_cells(a, b, n_boot=50)
    for cell in (a, b):
        rec = bs.evaluate_records(gt, make_dets(gt, 52 if cell == a else 53),
                                  metrics=bs.ALL_METRICS)
        compare.save_records(rec, cell / compare.RECORDS_FILE)
        back = compare.load_records(cell / compare.RECORDS_FILE)
        assert bs.accumulate(back, metrics=bs.ALL_METRICS) == bs.accumulate(
            rec, metrics=bs.ALL_METRICS)
        assert not list(cell.glob(".*tmp*"))  # written atomically
        # From now on the detections are not read: make them useless to prove it.
        (cell / "detections.bbox.json").write_text("[]")
    cached = compare.bootstrap_cells(a, b, n_boot=50)
    assert cached.to_dict() == fresh.to_dict()
