"""Per-image COCOeval records, and COCOeval.accumulate() re-run from them with image weights.

Why: adjacent cells of the SEPC table differ by 0.5-1.2 AP while one recipe's COCO AP
moves 0.1-0.3 AP from run to run, so a delta needs an interval. From single runs, the
paired bootstrap resamples the evaluation images with replacement and recomputes BOTH
APs on the same resample; with several seeds per cell it resamples the
images of every run at once, and `reports.stats.claims` adds the seeds' own spread.

Exactness: COCOeval.evaluate() (pycocotools) runs ONCE per detection set; its per-image
records (dtMatches, dtScores, dtIgnore, gtIgnore per category x area range x image) are
compacted into flat arrays, and each resample re-runs a vectorised COCOeval.accumulate()
with image multiplicities w_i: an image drawn k times contributes its detections k times
to the TP/FP cumulative sums and its non-ignored ground truth k times to the number of gt.
With w = 1 for every image this is COCOeval.accumulate()+summarize() (same stable score
order, same float operations: tests check 1e-9); with integer w it equals pycocotools run
on a dataset in which each image is replaced by w_i copies (exact when no two different
detections of a category tie on score; with ties, copies of an image count as adjacent).

How the accumulate is vectorised: for a category, pycocotools' interpolated precision at
recall threshold r is max{precision_j : recall_j >= r}, and that maximum is always
attained at a true-positive detection (a false positive only lowers precision, an ignored
or zero-weight one repeats the previous point). So per resample only the TP detections
are visited, with their weighted cumulative TP count and the weighted count of
non-ignored detections ranked above them (one cumulative sum over all detections).

Units: `accumulate` returns pycocotools units (fractions, -1 where undefined);
`BootstrapResult` and `reports.stats.claims` use AP points (percent), like the result store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import multiprocessing as mp
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: metric -> (area index in COCOeval.params.areaRng, IoU-threshold index or None = all, kind)
_METRIC_SPEC: dict[str, tuple[int, int | None, str]] = {
    "AP": (0, None, "precision"),
    "AP50": (0, 0, "precision"),
    "AP75": (0, 5, "precision"),
    "APs": (1, None, "precision"),
    "APm": (2, None, "precision"),
    "APl": (3, None, "precision"),
    "AR100": (0, None, "recall"),
    "ARs": (1, None, "recall"),
    "ARm": (2, None, "recall"),
    "ARl": (3, None, "recall"),
}
ALL_METRICS: tuple[str, ...] = tuple(_METRIC_SPEC)
#: Area-range metrics (APs/APm/APl, ARs/ARm/ARl) make evaluate() run evaluateImg for
#: 4 area ranges instead of 1 and about double the resampling time; ask for them.
DEFAULT_METRICS: tuple[str, ...] = ("AP", "AP50", "AP75", "AR100")
#: indices of COCOeval.stats for each metric (maxDets=100 ones only).
_STATS_INDEX = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5,
                "AR100": 8, "ARs": 9, "ARm": 10, "ARl": 11}
_EPS = np.spacing(1)
#: COCOeval.params.areaRng (all, small, medium, large): the canonical area indices above.
_AREA_RNG = [[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2]]
_AREA_LBL = ["all", "small", "medium", "large"]


def _area_positions(p: Any, area_idx: Iterable[int]) -> dict[int, int]:
    """Canonical area index -> its position in params.areaRng (which may be a subset)."""
    rngs = [list(map(float, r)) for r in p.areaRng]
    out = {}
    for a in area_idx:
        want = list(map(float, _AREA_RNG[a]))
        if want not in rngs:
            raise ValueError(f"COCOeval params lack the area range {_AREA_LBL[a]} {want}")
        out[a] = rngs.index(want)
    return out


def _restrict_areas(p: Any, area_idx: Iterable[int]) -> None:
    """Evaluate only the area ranges the metrics need (evaluateImg runs once per range)."""
    p.areaRng = [list(_AREA_RNG[a]) for a in area_idx]
    p.areaRngLbl = [_AREA_LBL[a] for a in area_idx]


# --------------------------------------------------------------------------- records
@dataclass
class _AreaArrays:
    """Weight-independent arrays of one area range, all categories (see module doc).

    "Kept" detections are those not ignored at every IoU threshold, ordered by category,
    then by pycocotools' stable descending-score order. The TP list holds, per segment
    s = t*K + k (IoU threshold t, category k), the kept detections that are true
    positives at threshold t, in rank order; the IG list likewise the ignored ones.
    """

    n_cat: int
    gt_img: np.ndarray  # (G,) image index   } non-ignored gt count per (image, category),
    gt_cat: np.ndarray  # (G,) category      } sparse
    gt_cnt: np.ndarray  # (G,) float64 count }
    kept_img: np.ndarray  # (Dk,) image index of each kept detection
    kept_seg_start: np.ndarray  # (T*K,) global kept index of the segment's category start
    tp_img: np.ndarray  # (P,) image index of each TP entry
    tp_kept_end: np.ndarray  # (P,) global kept index + 1 of the TP entry's detection
    seg_tp_start: np.ndarray  # (T*K+1,) TP-list boundaries per segment
    seg_tp_count: np.ndarray  # (T*K,)
    tp_seg: np.ndarray  # (P,) segment of each TP entry
    tp_cat: np.ndarray  # (P,) category of each TP entry
    ig_img: np.ndarray  # (Q,) image index of each IG entry
    seg_ig_start: np.ndarray  # (T*K,) IG-list start per segment
    tp_ig_end: np.ndarray  # (P,) IG-list end of the IG entries ranked above the TP entry
    # reusable work buffers of _area_curves: fresh large arrays each resample cost more in
    # page faults than the arithmetic itself
    ws: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False,
                                                  compare=False)

    def __getstate__(self) -> dict[str, Any]:  # pickle without the work buffers
        return {**self.__dict__, "ws": {}}

    def buf(self, name: str, n: int, dtype: Any) -> np.ndarray:
        key = (name, np.dtype(dtype).str)
        b = self.ws.get(key)
        if b is None or len(b) != n:
            b = self.ws[key] = np.empty(n, dtype=dtype)
        return b


@dataclass
class EvalRecords:
    """Compact per-image COCOeval records of ONE detection set (from one evaluate()).

    Why: everything a resample needs, without pycocotools' per-image dicts, so that
    accumulate() can be re-run thousands of times with image multiplicities.
    """

    img_ids: np.ndarray  # (N,) image ids, COCOeval order (sorted)
    cat_ids: np.ndarray  # (K,) category ids, COCOeval order (sorted)
    iou_thrs: np.ndarray  # (T,)
    rec_thrs: np.ndarray  # (R,)
    areas: dict[int, _AreaArrays] = field(repr=False)
    n_dets: int = 0

    @property
    def n_images(self) -> int:
        return int(len(self.img_ids))


def load_coco_gt(ann: Mapping[str, Any] | Any) -> Any:
    """A pycocotools COCO from a dataset dict, or a COCO (returned as is), quietly. Reading the
    annotation file is the caller's (this room does no file I/O)."""
    from pycocotools.coco import COCO

    if isinstance(ann, COCO):
        return ann
    if not isinstance(ann, Mapping):
        raise TypeError(f"ground truth: a COCO dataset dict or a pycocotools COCO, not "
                        f"{type(ann).__name__}")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dict(ann)
        coco.createIndex()
        return coco


def _load_results(coco_gt: Any, dets: Sequence[Mapping[str, Any]]) -> Any:
    """COCO.loadRes on copies of the rows (loadRes mutates them); also takes no rows."""
    from pycocotools.coco import COCO

    rows = [dict(d) for d in dets]
    with contextlib.redirect_stdout(io.StringIO()):
        if rows:
            return coco_gt.loadRes(rows)
        res = COCO()  # loadRes fails on an empty list; an empty result set is valid
        res.dataset = {"images": list(coco_gt.dataset["images"]),
                       "categories": list(coco_gt.dataset.get("categories", [])),
                       "annotations": []}
        res.createIndex()
        return res


# State handed to forked workers (set just before the fork, cleared after).
_FORK_STATE: tuple[Any, Any, list[int], tuple[int, ...]] | None = None


def _evaluate_cat_chunk(cat_ids: list[int]) -> list[dict[int, tuple]]:
    """Run COCOeval.evaluate() on a subset of categories; return per-category records."""
    from pycocotools.cocoeval import COCOeval

    assert _FORK_STATE is not None
    coco_gt, coco_dt, img_ids, area_idx = _FORK_STATE
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    ev.params.imgIds = list(img_ids)
    ev.params.catIds = list(cat_ids)
    _restrict_areas(ev.params, area_idx)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
    return _extract(ev, area_idx)


def _extract(ev: Any, area_idx: Iterable[int]) -> list[dict[int, tuple]]:
    """Per category (in ev.params.catIds order): {area: records} from ev.evalImgs.

    records = (kept_img, gt_img, gt_cnt, tp_pos[t], ig_pos[t]) where positions index the
    category's kept detections in pycocotools' accumulate order.
    """
    p = ev.params
    n_img, n_area, n_thr = len(p.imgIds), len(p.areaRng), len(p.iouThrs)
    max_det = p.maxDets[-1]
    pos = _area_positions(p, area_idx)
    out: list[dict[int, tuple]] = []
    for k in range(len(p.catIds)):
        per_area: dict[int, tuple] = {}
        for a in area_idx:
            base = k * n_area * n_img + pos[a] * n_img
            block = ev.evalImgs[base:base + n_img]
            idx = [i for i, e in enumerate(block) if e is not None]
            es = [block[i] for i in idx]
            gt_cnt = np.array([int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)) for e in es],
                              dtype=np.int64)
            gt_img = np.asarray(idx, dtype=np.int64)
            nd = np.array([len(e["dtScores"][:max_det]) for e in es], dtype=np.int64)
            if nd.sum() == 0:
                empty = np.zeros(0, np.int64)
                per_area[a] = (empty, gt_img[gt_cnt > 0], gt_cnt[gt_cnt > 0],
                               [empty] * n_thr, [empty] * n_thr)
                continue
            # exactly accumulate(): concatenate in image order, stable sort by -score
            scores = np.concatenate([np.asarray(e["dtScores"][:max_det], dtype=float) for e in es])
            dtm = np.concatenate([np.asarray(e["dtMatches"])[:, :max_det] for e in es], axis=1)
            dtig = np.concatenate([np.asarray(e["dtIgnore"])[:, :max_det] for e in es], axis=1)
            img = np.repeat(gt_img, nd)
            order = np.argsort(-scores, kind="mergesort")
            matched = (dtm != 0)[:, order]  # np.logical_and(dtm, .) semantics
            ignored = dtig.astype(bool)[:, order]
            img = img[order]
            kept = ~ignored.all(axis=0)
            matched, ignored, img = matched[:, kept], ignored[:, kept], img[kept]
            tps = matched & ~ignored
            tp_pos = [np.flatnonzero(tps[t]) for t in range(n_thr)]
            ig_pos = [np.flatnonzero(ignored[t]) for t in range(n_thr)]
            per_area[a] = (img, gt_img[gt_cnt > 0], gt_cnt[gt_cnt > 0], tp_pos, ig_pos)
        out.append(per_area)
    return out


def _assemble(per_cat: list[dict[int, tuple]], area: int, n_img: int, n_thr: int) -> _AreaArrays:
    """Concatenate per-category records of one area into segment-ordered flat arrays.

    Detections ranked below a category's last true positive (at any IoU threshold) are
    dropped: they only add points after the last recall step, which never matter.
    """
    n_cat = len(per_cat)
    recs = [pc[area] for pc in per_cat]
    gt_count = np.zeros((n_img, n_cat), dtype=np.float64)
    for k, r in enumerate(recs):
        gt_count[r[1], k] = r[2]
    n_keep = [max((int(p[-1]) + 1 for p in r[3] if len(p)), default=0) for r in recs]
    kept_len = np.array(n_keep, dtype=np.int64)
    kept_start = np.concatenate(([0], np.cumsum(kept_len)))
    kept_img = (np.concatenate([r[0][:n] for r, n in zip(recs, n_keep)]).astype(np.intp)
                if kept_len.sum() else np.zeros(0, np.intp))

    def seg_lists(j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        gpos, counts = [], []
        for t in range(n_thr):
            for k, r in enumerate(recs):
                pos = r[j][t]
                pos = pos[pos < n_keep[k]]
                gpos.append(pos + kept_start[k])
                counts.append(len(pos))
        counts_a = np.asarray(counts, dtype=np.int64)
        seg = np.repeat(np.arange(n_thr * n_cat, dtype=np.intp), counts_a)
        g = np.concatenate(gpos).astype(np.intp) if counts_a.sum() else np.zeros(0, np.intp)
        return g, seg, np.concatenate(([0], np.cumsum(counts_a))).astype(np.intp)

    tp_g, tp_seg, seg_tp_start = seg_lists(3)
    ig_g, ig_seg, seg_ig_start = seg_lists(4)
    # IG entries of the same segment ranked above each TP entry (positions never coincide)
    big = int(kept_start[-1]) + 1
    ig_end = np.searchsorted(ig_seg * big + ig_g, tp_seg * big + tp_g, side="left")
    gt_img, gt_cat = np.nonzero(gt_count)
    return _AreaArrays(
        n_cat=n_cat,
        gt_img=gt_img.astype(np.intp),
        gt_cat=gt_cat.astype(np.intp),
        gt_cnt=gt_count[gt_img, gt_cat],
        kept_img=kept_img,
        kept_seg_start=np.tile(kept_start[:-1], n_thr).astype(np.intp),
        tp_img=kept_img[tp_g],
        tp_kept_end=(tp_g + 1).astype(np.intp),
        seg_tp_start=seg_tp_start,
        seg_tp_count=np.diff(seg_tp_start),
        tp_seg=tp_seg,
        tp_cat=(tp_seg % n_cat).astype(np.intp),
        ig_img=kept_img[ig_g],
        seg_ig_start=seg_ig_start[:-1],
        tp_ig_end=ig_end.astype(np.intp),
    )


def _areas_for(metrics: Iterable[str]) -> tuple[int, ...]:
    unknown = [m for m in metrics if m not in _METRIC_SPEC]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {list(_METRIC_SPEC)}")
    return tuple(sorted({_METRIC_SPEC[m][0] for m in metrics}))


def records_from_cocoeval(ev: Any, metrics: Sequence[str] = ALL_METRICS) -> EvalRecords:
    """EvalRecords from a COCOeval on which evaluate() has run (its evalImgs).

    Why: lets callers that already ran pycocotools (or tests comparing against it) reuse
    that evaluate() instead of running it again.
    """
    p = ev.params
    if not ev.evalImgs:
        raise ValueError("run COCOeval.evaluate() first")
    if not p.useCats:
        raise ValueError("per-category evaluation (params.useCats=1) is required")
    area_idx = _areas_for(metrics)
    return _make_records(p, _extract(ev, area_idx), area_idx, len(ev.cocoDt.anns))


def _make_records(p: Any, per_cat: list[dict[int, tuple]], area_idx: tuple[int, ...],
                  n_dets: int) -> EvalRecords:
    n_img, n_thr = len(p.imgIds), len(p.iouThrs)
    std_iou = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
    if not (np.array_equal(np.asarray(p.iouThrs, float), std_iou) and p.maxDets[-1] == 100):
        raise ValueError("COCOeval params must keep COCO's IoU thresholds and maxDets 100")
    rec = np.asarray(p.recThrs, float)
    if not (np.all(np.diff(rec) > 0) and rec[0] >= 0 and rec[-1] <= 1):
        raise ValueError("recall thresholds must be increasing within [0, 1]")
    return EvalRecords(
        img_ids=np.asarray(p.imgIds, dtype=np.int64),
        cat_ids=np.asarray(p.catIds, dtype=np.int64),
        iou_thrs=np.asarray(p.iouThrs, dtype=float),
        rec_thrs=np.asarray(p.recThrs, dtype=float),
        areas={a: _assemble(per_cat, a, n_img, n_thr) for a in area_idx},
        n_dets=n_dets,
    )


def evaluate_records(
    coco_gt: Any,
    detections: Sequence[Mapping[str, Any]],
    *,
    metrics: Sequence[str] = ALL_METRICS,
    img_ids: Sequence[int] | None = None,
    workers: int = 1,
) -> EvalRecords:
    """Run pycocotools COCOeval.evaluate() once on a detection set and compact its records.

    Why: evaluate() (IoUs, greedy matching, crowd/area ignore) is the expensive, exact
    part; it does not depend on the resample, so it runs once and accumulate() is redone
    per resample from these arrays. `coco_gt`: COCO or dataset dict. `workers` > 1
    splits the categories over forked processes (evaluate is per category; same result).
    """
    from pycocotools.cocoeval import COCOeval

    global _FORK_STATE
    coco_gt = load_coco_gt(coco_gt)
    coco_dt = _load_results(coco_gt, detections)
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    if img_ids is not None:
        ev.params.imgIds = sorted(int(i) for i in img_ids)
    area_idx = _areas_for(metrics)
    cat_list = [int(c) for c in np.unique(ev.params.catIds)]
    workers = max(1, min(int(workers), len(cat_list)))
    _restrict_areas(ev.params, area_idx)
    if workers == 1 or "fork" not in mp.get_all_start_methods():
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
        return records_from_cocoeval(ev, metrics)
    img_list = [int(i) for i in np.unique(ev.params.imgIds)]
    _FORK_STATE = (coco_gt, coco_dt, img_list, area_idx)
    try:
        n_chunks = min(len(cat_list), 4 * workers)
        chunks = [cat_list[i::n_chunks] for i in range(n_chunks)]
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_evaluate_cat_chunk, chunks)
    finally:
        _FORK_STATE = None
    by_cat = {c: r for chunk, part in zip(chunks, parts) for c, r in zip(chunk, part)}
    ev.params.imgIds, ev.params.catIds = img_list, cat_list
    return _make_records(ev.params, [by_cat[c] for c in cat_list], area_idx,
                         len(coco_dt.anns))


# ------------------------------------------------------------------------ accumulate
def _recall_lut(n: np.ndarray, rec_thrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lookup table of "how many recall thresholds does tp/n reach", exactly as pycocotools.

    pycocotools compares rc = fl(tp / n) >= thr (searchsorted of the thresholds into rc).
    For integer tp and a category's integer number of gt n, fl(m / n) is non-decreasing
    in m, so each threshold r is reached from the smallest m_r with fl(m_r / n) >= thr_r
    on. Returns (off (K,), table) with count(tp) = table[off[k] + tp] - R * k for
    0 <= tp <= n_k; table is the running count over all categories' blocks of n_k + 1.
    """
    n_rec = len(rec_thrs)
    nn = n[:, None]
    m = np.ceil(rec_thrs[None, :] * nn)  # within one of m_r; fixed with exact comparisons
    while True:
        dec = (m > 0) & ((m - 1) / nn >= rec_thrs)
        if not dec.any():
            break
        m -= dec
    while True:
        inc = m / nn < rec_thrs
        if not inc.any():
            break
        m += inc
    sizes = n.astype(np.intp) + 1
    off = np.zeros(len(n), dtype=np.intp)
    np.cumsum(sizes[:-1], out=off[1:])
    counts = np.bincount((off[:, None] + m.astype(np.intp)).ravel(), minlength=int(sizes.sum()))
    assert counts.sum() == n_rec * len(n)
    return off, np.cumsum(counts)


def _cumsum0(aa: _AreaArrays, name: str, w: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """[0, cumsum(w[idx])] in a reused buffer (take: mode="clip" writes out unbuffered;
    indices are valid by construction)."""
    g = aa.buf(name + "_w", len(idx), w.dtype)
    np.take(w, idx, out=g, mode="clip")
    out = aa.buf(name, len(idx) + 1, w.dtype)
    out[0] = 0
    np.cumsum(g, out=out[1:])
    return out


def _area_curves(aa: _AreaArrays, w: np.ndarray, n_thr: int, rec_thrs: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted COCOeval.accumulate for one area range (maxDets=100).

    Returns (mean precision over recall thresholds (T, K), recall (T, K), valid (K,)):
    the (T, R, K) precision array is never materialised, only its row means.
    """
    n_cat, n_rec, n_tp = aa.n_cat, len(rec_thrs), len(aa.tp_img)
    n_seg = n_thr * n_cat
    gw = aa.buf("gw", len(aa.gt_img), np.float64)
    np.take(w.astype(np.float64), aa.gt_img, out=gw, mode="clip")
    gw *= aa.gt_cnt
    npig = np.bincount(aa.gt_cat, weights=gw, minlength=n_cat)
    valid = npig > 0
    if n_tp == 0:
        z = np.zeros((n_thr, n_cat))
        return z, z.copy(), valid
    # weighted cumulative counts: integers (exact in float64, as in pycocotools)
    longest = max(len(aa.kept_img), n_tp, len(aa.ig_img))
    dt = np.int32 if int(w.max(initial=0)) * longest < 2**31 - 1 else np.int64
    w = w.astype(dt)
    ck = _cumsum0(aa, "ck", w, aa.kept_img)
    ct = _cumsum0(aa, "ct", w, aa.tp_img)
    # Within segment s (threshold t, category k), for TP entry j:
    #   tp_j = ct[j+1] - ct[start_s]                       (TP weight ranked at/above j)
    #   fp_j = (ck[end_j] - ck[kstart_k]) - tp_j - (ci[igend_j] - ci[igstart_s])
    #        = ck[end_j] - ci[igend_j] - ct[j+1] + C_s     (kept minus TP minus ignored)
    # with the per-segment constant C_s = ct[start_s] - ck[kstart_k] + ci[igstart_s].
    base_tp = ct[aa.seg_tp_start[:-1]]
    const = base_tp - ck[aa.kept_seg_start]
    tp = aa.buf("tp", n_tp, dt)
    fp = aa.buf("fp", n_tp, dt)
    tmp = aa.buf("tmp", n_tp, dt)
    np.take(ck, aa.tp_kept_end, out=fp, mode="clip")
    fp -= ct[1:]
    if len(aa.ig_img):
        ci = _cumsum0(aa, "ci", w, aa.ig_img)
        np.take(ci, aa.tp_ig_end, out=tmp, mode="clip")
        fp -= tmp
        const += ci[aa.seg_ig_start]
    np.take(const, aa.tp_seg, out=tmp, mode="clip")
    fp += tmp
    np.take(base_tp, aa.tp_seg, out=tp, mode="clip")
    np.subtract(ct[1:], tp, out=tp)
    tpf = aa.buf("tpf", n_tp, np.float64)
    den = aa.buf("den", n_tp, np.float64)
    pr = aa.buf("pr", n_tp, np.float64)
    tpf[...] = tp
    den[...] = fp
    den += tpf  # pycocotools: tp / (fp + tp + np.spacing(1)), same order of operations
    den += _EPS
    np.divide(tpf, den, out=pr)
    npig_safe = np.where(valid, npig, 1.0)
    # key = seg * (R + 1) + number of recall thresholds reached by rc = tp / npig: entry
    # j serves thresholds r < that number (see _recall_lut)
    off, table = _recall_lut(npig_safe, rec_thrs)
    idx = aa.buf("idx", n_tp, np.intp)
    key = aa.buf("key", n_tp, np.intp)
    np.take(off, aa.tp_cat, out=idx, mode="clip")
    idx += tp
    np.take(table, idx, out=key, mode="clip")
    kof = aa.ws.get(("key_off", str(n_rec)))
    if kof is None:  # seg * (R + 1) - R * k
        kof = aa.ws[("key_off", str(n_rec))] = aa.tp_seg * (n_rec + 1) - n_rec * aa.tp_cat
    key += kof
    q = aa.buf("q", n_seg * (n_rec + 1), np.float64)
    q[...] = 0.0
    np.maximum.at(q, key, pr)
    # precision at threshold r = max over buckets > r (reverse cumulative max)
    prec = aa.buf("prec", n_seg * n_rec, np.float64).reshape(n_seg, n_rec)
    np.maximum.accumulate(q.reshape(n_seg, n_rec + 1)[:, :0:-1], axis=1, out=prec)
    prec_mean = prec.mean(axis=1).reshape(n_thr, n_cat)
    tp_tot = (ct[aa.seg_tp_start[1:]] - ct[aa.seg_tp_start[:-1]]).astype(np.float64)
    recall = tp_tot.reshape(n_thr, n_cat) / npig_safe
    return prec_mean, recall, valid


def _metrics_from_curves(curves: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
                         metrics: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in metrics:
        area, t, kind = _METRIC_SPEC[m]
        prec, rec, valid = curves[area]
        arr = prec if kind == "precision" else rec
        arr = arr[:, valid] if t is None else arr[t:t + 1, valid]
        out[m] = float(arr.mean()) if arr.size else -1.0
    return out


def accumulate(records: EvalRecords, weights: np.ndarray | None = None,
               metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """COCOeval.accumulate()+summarize() stats with image multiplicities `weights`.

    Why: the per-resample step of the bootstrap; with weights=None (every image once)
    it reproduces pycocotools' stats. Fractions as in COCOeval.stats, -1 if undefined.
    """
    w = (np.ones(records.n_images, dtype=np.int64) if weights is None
         else np.asarray(weights, dtype=np.int64))
    if w.shape != (records.n_images,):
        raise ValueError(f"weights must have shape ({records.n_images},), got {w.shape}")
    if (w < 0).any() or (weights is not None and np.any(np.asarray(weights) != w)):
        raise ValueError("weights must be non-negative integers (image multiplicities)")
    areas = _areas_for(metrics)
    missing = [a for a in areas if a not in records.areas]
    if missing:
        raise ValueError("records were evaluated without the area ranges these metrics need")
    n_thr = len(records.iou_thrs)
    curves = {a: _area_curves(records.areas[a], w, n_thr, records.rec_thrs) for a in areas}
    return _metrics_from_curves(curves, metrics)




def records_to_arrays(records: EvalRecords) -> dict[str, np.ndarray]:
    """Plain named arrays (for an npz file without pickle; the store writes and reads it)."""
    arrays: dict[str, np.ndarray] = {
        "img_ids": records.img_ids, "cat_ids": records.cat_ids, "iou_thrs": records.iou_thrs,
        "rec_thrs": records.rec_thrs, "n_dets": np.asarray(records.n_dets)}
    for area, arr in records.areas.items():
        for f in dataclasses.fields(arr):
            if f.name != "ws":
                arrays[f"area{area}.{f.name}"] = np.asarray(getattr(arr, f.name))
    return arrays


def records_from_arrays(z: Mapping[str, np.ndarray]) -> EvalRecords:
    """The inverse of :func:`records_to_arrays`."""
    areas: dict[int, dict[str, Any]] = {}
    for key in z:
        if key.startswith("area"):
            area, name = key[4:].split(".", 1)
            areas.setdefault(int(area), {})[name] = z[key]
    return EvalRecords(
        img_ids=z["img_ids"], cat_ids=z["cat_ids"], iou_thrs=z["iou_thrs"],
        rec_thrs=z["rec_thrs"], n_dets=int(z["n_dets"]),
        areas={a: _AreaArrays(**{k: int(v) if k == "n_cat" else v for k, v in d.items()})
               for a, d in areas.items()})


def covers(records: EvalRecords, metrics: Sequence[str]) -> bool:
    """Whether ``records`` hold the area ranges ``metrics`` need."""
    return set(_areas_for(metrics)) <= set(records.areas)
