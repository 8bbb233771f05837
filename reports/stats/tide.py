"""TIDE error decomposition of one detection set: where its missing AP goes.

TIDE (Bolya et al., ECCV 2020, "TIDE: A General Toolbox for Identifying Object Detection
Errors"; reference implementation the ``tidecv`` package, version 1.0.1) asks, for each kind
of error, how much AP the detector would gain if that error alone were fixed (its dAP).
This module computes it on plain numpy from COCO-format ground truth and detections, with
tidecv's definitions step for step (tests/test_tide.py checks it against tidecv's numbers):

AP. One foreground IoU threshold (``pos_thresh``, 0.5): per class, the detections sorted by
score (stable), the precision envelope sampled at the 101 recall points 0, 0.01, ..., 1
(COCO's interpolation), averaged over the classes that have a ground truth or a detection;
in percent. It is close to COCO's AP50, not equal: a class with detections but no ground
truth counts with AP 0 (COCO leaves it out), the 100 detections kept per image are counted
over all classes (COCO: per class), and crowd boxes only ignore a detection they cover by
more than ``pos_thresh`` of its area (COCO: at least).

Matching, per image. Detections in descending score order each take the unmatched
ground truth of their class with the highest IoU (pycocotools' box IoU), if it is at least
``pos_thresh``: a true positive. An unmatched detection inside a crowd box of its class is
ignored (no AP point). Every other detection, ignored ones included, gets one error, tested
in this order (IoU to non-crowd ground truth; "used" = matched):

- Loc  (localisation): its highest same-class IoU is in [``bg_thresh``, ``pos_thresh``];
- Cls  (classification): IoU >= ``pos_thresh`` with a ground truth of another class;
- Dupe (duplicate): IoU >= ``pos_thresh`` with a used ground truth of its class;
- Bkg  (background): IoU <= ``bg_thresh`` with every ground truth (or the image has none);
- Both (classification and localisation): anything else.

A ground truth that no detection matched is a Miss unless a Loc or Cls error points at it
(then fixing that error would find it).

dAP, each against the base AP (negative values are set to 0, as tidecv does):

- Loc / Cls: per unused ground truth, the highest-scoring Loc or Cls error pointing at it
  (both types compete) becomes a true positive of the ground truth's class with its own
  score; the other errors of the type being fixed are removed;
- Dupe / Bkg / Both: those false positives are removed;
- Miss: the missed ground truths are removed from the ground-truth count;
- FP (special): every true positive scored 1 and every false positive 0 (perfect precision);
- FN (special): every unmatched ground truth removed from the count (perfect recall). FP
  and FN are not clipped at 0.

Points re-entered by a fix, and all false positives, rank before the original true
positives of equal score in the fixed AP, because tidecv builds the fixed data that way;
the base AP keeps the detection order. A tie can thus move AP by itself; the numbers here
reproduce tidecv's, ties included.

Deviations from tidecv, all where tidecv has no answer: no detections, or no image with a
ground truth or detection of any class, give NaN everywhere with a note instead of an
exception (tidecv divides by zero); an oracle that leaves no class to average gives NaN for
that dAP. Only boxes: TIDE's mask mode and its qualifiers (size, aspect ratio) are not here.

No file I/O and no import of ``bench`` or ``sepc``: the report calls :func:`tide` on the
detections (``<prefix>.bbox.json``) and the annotation file that a finished cell keeps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["MAIN_ERRORS", "SPECIAL_ERRORS", "TideResult", "box_iou", "tide"]

#: The six main error types, in tidecv's order.
MAIN_ERRORS: tuple[str, ...] = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
#: The two special errors: perfect precision (FP) and perfect recall (FN).
SPECIAL_ERRORS: tuple[str, ...] = ("FP", "FN")

_CLS, _LOC, _BOTH, _DUPE, _BKG, _MISS = range(6)
_TP = -1  # error code of a true positive
_RECALLS = np.arange(101) / 100  # the 101 recall points, as tidecv's x / 100


@dataclass(frozen=True)
class TideResult:
    """TIDE of one detection set; AP and dAPs in AP points (percent), like the store."""

    ap: float
    main: dict[str, float]  # MAIN_ERRORS -> dAP
    special: dict[str, float]  # SPECIAL_ERRORS -> dAP
    counts: dict[str, int]  # MAIN_ERRORS -> number of errors of that type
    n_images: int
    n_gt: int  # non-crowd ground truths
    n_dets: int  # detections evaluated (at most max_dets per image)
    pos_thresh: float = 0.5
    bg_thresh: float = 0.1
    note: str = ""  # why the numbers are NaN, when they are
    per_class_ap: dict[int, float] = field(default_factory=dict)

    def as_row(self, prefix: str = "tide_") -> dict[str, Any]:
        """Flat columns for one row of a results table (``tide_AP``, ``tide_Cls``, ...,
        ``tide_FP``, ``tide_FN``, ``tide_n_Cls``, ..., ``tide_note``)."""
        row: dict[str, Any] = {f"{prefix}AP": self.ap}
        row.update({f"{prefix}{k}": v for k, v in self.main.items()})
        row.update({f"{prefix}{k}": v for k, v in self.special.items()})
        row.update({f"{prefix}n_{k}": v for k, v in self.counts.items()})
        row[f"{prefix}note"] = self.note
        return row


def box_iou(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray | bool = False) -> np.ndarray:
    """IoU of (n, 4) and (m, 4) xywh boxes, as pycocotools' ``maskUtils.iou`` on boxes:
    no "+1", and a crowd box divides by the detection's area only."""
    d = np.asarray(dets, dtype=np.float64).reshape(-1, 4)
    g = np.asarray(gts, dtype=np.float64).reshape(-1, 4)
    crowd = np.broadcast_to(np.asarray(crowd, dtype=bool), (len(g),))
    w = (np.minimum(d[:, None, 2] + d[:, None, 0], g[None, :, 2] + g[None, :, 0])
         - np.maximum(d[:, None, 0], g[None, :, 0]))
    h = (np.minimum(d[:, None, 3] + d[:, None, 1], g[None, :, 3] + g[None, :, 1])
         - np.maximum(d[:, None, 1], g[None, :, 1]))
    inter = w * h
    da = (d[:, 2] * d[:, 3])[:, None]
    union = np.where(crowd[None, :], da, da + (g[:, 2] * g[:, 3])[None, :] - inter)
    ok = (w > 0) & (h > 0)
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def _nan_result(note: str, n_images: int, n_gt: int, n_dets: int, pos: float,
                bg: float) -> TideResult:
    nan = float("nan")
    return TideResult(ap=nan, main=dict.fromkeys(MAIN_ERRORS, nan),
                      special=dict.fromkeys(SPECIAL_ERRORS, nan),
                      counts=dict.fromkeys(MAIN_ERRORS, 0), n_images=n_images, n_gt=n_gt,
                      n_dets=n_dets, pos_thresh=pos, bg_thresh=bg, note=note)


def _class_ap(tp: np.ndarray, n_gt: int) -> float:
    """tidecv's APDataObject.get_ap on detections already in rank order."""
    if n_gt == 0 or len(tp) == 0:
        return 0.0
    n_true = np.cumsum(tp)
    precision = n_true / np.arange(1, len(tp) + 1)
    recall = n_true / n_gt
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, _RECALLS, side="left")
    y = np.where(idx < len(tp), envelope[np.minimum(idx, len(tp) - 1)], 0.0)
    return sum(y.tolist()) / len(y) * 100  # Python's left-to-right sum, as tidecv


@dataclass
class _Points:
    """AP data points of one evaluation: class, score, true positive, and rank keys."""

    cls: np.ndarray
    score: np.ndarray
    tp: np.ndarray
    group: np.ndarray  # ties on score: group 0 before group 1
    seq: np.ndarray  # then detection order

    def mean_ap(self, classes: np.ndarray, n_gt: np.ndarray) -> tuple[float, dict[int, float]]:
        """Mean over the non-empty classes (a ground truth or a point), NaN if none."""
        order = np.lexsort((self.seq, self.group, -self.score, self.cls))
        cls, tp = self.cls[order], self.tp[order]
        bounds = np.searchsorted(cls, classes, side="left"), np.searchsorted(cls, classes,
                                                                             side="right")
        aps: dict[int, float] = {}
        for c, lo, hi, g in zip(classes.tolist(), *bounds, n_gt.tolist()):
            if hi > lo or g > 0:
                aps[c] = _class_ap(tp[lo:hi], g)
        return (sum(aps.values()) / len(aps) if aps else float("nan")), aps


def tide(gt: Mapping[str, Any], dets: Sequence[Mapping[str, Any]] | None,
         pos_thresh: float = 0.5, bg_thresh: float = 0.1, max_dets: int = 100) -> TideResult:
    """TIDE of ``dets`` (COCO result rows: image_id, category_id, bbox xywh, score) against
    ``gt`` (a COCO annotation dict: images, annotations with bbox xywh and iscrowd).

    Images are those of ``gt['images']`` in that order; detections on other images are not
    evaluated (as tidecv). Empty or missing detections give NaN with a note.
    """
    for key in ("images", "annotations"):
        if key not in gt:
            raise ValueError(f"TIDE: the ground truth has no {key!r} list (COCO format)")
    img_index = {im["id"]: k for k, im in enumerate(gt["images"])}
    anns = list(gt["annotations"])
    for a in anns:  # an annotation's image missing from the list: evaluated after the others
        if a["image_id"] not in img_index:
            img_index[a["image_id"]] = len(img_index)
    n_img = len(img_index)
    dets = list(dets or [])
    g_img = np.array([img_index[a["image_id"]] for a in anns], dtype=np.int64)
    g_cls = np.array([a["category_id"] for a in anns], dtype=np.int64)
    g_box = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    g_crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    n_gt_total = int((~g_crowd).sum())
    if not dets:
        return _nan_result("no detections", n_img, n_gt_total, 0, pos_thresh, bg_thresh)
    if n_gt_total == 0:
        return _nan_result("no ground truth (only crowd boxes or none)", n_img, 0, len(dets),
                           pos_thresh, bg_thresh)
    d_img = np.array([img_index.get(d["image_id"], -1) for d in dets], dtype=np.int64)
    keep = d_img >= 0
    if not keep.any():
        return _nan_result("no detection on an image of the ground truth", n_img, n_gt_total,
                           0, pos_thresh, bg_thresh)
    d_img = d_img[keep]
    d_cls = np.array([d["category_id"] for d in dets], dtype=np.int64)[keep]
    d_score = np.array([d["score"] for d in dets], dtype=np.float64)[keep]
    d_box = np.array([d["bbox"] for d in dets], dtype=np.float64).reshape(-1, 4)[keep]

    # Per image, in image order, then detections in stable descending-score order (the
    # order tidecv pushes AP points and finds errors in); kept: the first max_dets.
    g_by_img = np.argsort(g_img, kind="stable")
    g_split = np.searchsorted(g_img[g_by_img], np.arange(n_img + 1))
    d_by_img = np.argsort(d_img, kind="stable")
    d_split = np.searchsorted(d_img[d_by_img], np.arange(n_img + 1))

    rows: list[np.ndarray] = []  # detection indices in evaluation order
    err: list[np.ndarray] = []  # error code per evaluated detection (_TP for a match)
    ignored: list[np.ndarray] = []  # in a crowd region (no AP point)
    target: list[np.ndarray] = []  # ground truth a Loc/Cls error points at (global), or -1
    gt_used = np.zeros(len(anns), dtype=bool)
    gt_usable = np.zeros(len(anns), dtype=bool)
    for k in range(n_img):
        gi = g_by_img[g_split[k]:g_split[k + 1]]
        di = d_by_img[d_split[k]:d_split[k + 1]]
        if len(di) == 0:
            continue
        di = di[np.argsort(-d_score[di], kind="stable")][:max_dets]
        n = len(di)
        code = np.full(n, _BOTH, dtype=np.int64)
        tgt = np.full(n, -1, dtype=np.int64)
        used = np.zeros(n, dtype=bool)
        real, crowd = gi[~g_crowd[gi]], gi[g_crowd[gi]]
        if len(real):
            iou = box_iou(d_box[di], g_box[real])
            same = d_cls[di][:, None] == g_cls[real][None, :]
            cls_iou = iou * same
            buf = cls_iou.copy()
            for i in np.flatnonzero(cls_iou.max(axis=1) >= pos_thresh):
                j = int(np.argmax(buf[i]))
                if buf[i, j] >= pos_thresh:
                    used[i] = True
                    gt_used[real[j]] = True
                    buf[:, j] = 0
        ign = np.zeros(n, dtype=bool)
        for r in crowd:  # crowd regions: ignore unmatched detections of their class inside
            c_iou = box_iou(d_box[di], g_box[r:r + 1], crowd=True)[:, 0]
            ign |= ~used & (c_iou > pos_thresh) & (d_cls[di] == g_cls[r])
        code[used] = _TP
        bad = ~used
        if not len(real):
            code[bad] = _BKG
        else:
            r_used = gt_used[real][None, :]
            max_cls = cls_iou.max(axis=1)
            arg_cls = cls_iou.argmax(axis=1)
            noncls = iou * ~same
            max_non, arg_non = noncls.max(axis=1), noncls.argmax(axis=1)
            max_dupe = (r_used * iou * same).max(axis=1)
            max_any = iou.max(axis=1)
            todo = bad.copy()
            for c, hit, where in (
                    (_LOC, (bg_thresh <= max_cls) & (max_cls <= pos_thresh), arg_cls),
                    (_CLS, max_non >= pos_thresh, arg_non),
                    (_DUPE, max_dupe >= pos_thresh, None),
                    (_BKG, max_any <= bg_thresh, None)):
                sel = todo & hit
                code[sel] = c
                if where is not None:
                    tgt[sel] = real[where[sel]]
                todo &= ~sel
        rows.append(di)
        err.append(code)
        ignored.append(ign)
        target.append(tgt)

    if rows:
        order = np.concatenate(rows)
        code = np.concatenate(err)
        ign = np.concatenate(ignored)
        tgt = np.concatenate(target)
    else:
        order = code = tgt = np.zeros(0, dtype=np.int64)
        ign = np.zeros(0, dtype=bool)
    n_eval = len(order)
    cls, score = d_cls[order], d_score[order]
    seq = np.arange(n_eval)

    # BestGTMatch: per unused ground truth, the first (rank order) highest-scoring Loc or Cls
    # error pointing at it is the one a fix turns into a true positive.
    has_tgt = tgt >= 0
    live = has_tgt.copy()
    live[has_tgt] = ~gt_used[tgt[has_tgt]]
    gt_usable[tgt[live]] = True
    fixable = np.zeros(n_eval, dtype=bool)
    cand = np.flatnonzero(live)
    if len(cand):
        by = cand[np.lexsort((seq[cand], -score[cand], tgt[cand]))]
        first = np.r_[True, tgt[by][1:] != tgt[by][:-1]]
        fixable[by[first]] = True
    fixed_cls = cls.copy()
    fixed_cls[code == _CLS] = g_cls[tgt[code == _CLS]]

    real_gt = ~g_crowd
    missed = real_gt & ~gt_used  # every unmatched ground truth (FN)
    miss = missed & ~gt_usable  # ... that no error points at (Miss)
    classes = np.unique(np.concatenate([g_cls[real_gt], cls[~ign]]))
    n_gt = np.array([np.count_nonzero(g_cls[real_gt] == c) for c in classes], dtype=np.int64)
    n_miss = np.array([np.count_nonzero(g_cls[miss] == c) for c in classes], dtype=np.int64)
    n_fn = np.array([np.count_nonzero(g_cls[missed] == c) for c in classes], dtype=np.int64)

    is_tp = code == _TP
    pushed = ~ign  # AP points of the base evaluation (ignored detections have none)
    base = _Points(cls[pushed], score[pushed], is_tp[pushed], np.zeros(pushed.sum(), np.int64),
                   seq[pushed])
    ap, per_class = base.mean_ap(classes, n_gt)

    def fixed(error: int | None, fp_oracle: bool = False) -> _Points:
        """tidecv's fix_errors: errors first (fixed, removed or as they were), then the
        original true positives. ``error`` None (or Miss, which changes only the ground-truth
        count) fixes no detection."""
        fix = code == error
        keep_err = ~is_tp & ((~fix & ~ign) | (fix & fixable))
        take = keep_err | is_tp
        c = np.where(fix & fixable, fixed_cls, cls)[take]
        tp = (is_tp | (fix & fixable))[take]
        s = score[take]
        if fp_oracle:
            s = np.where(tp, 1.0, 0.0)
        return _Points(c, s, tp, np.where(is_tp[take], 1, 0), seq[take])

    main: dict[str, float] = {}
    for name, error in zip(MAIN_ERRORS, (_CLS, _LOC, _BOTH, _DUPE, _BKG, _MISS)):
        counts_gt = n_gt - n_miss if error == _MISS else n_gt
        new_ap, _ = fixed(error).mean_ap(classes, counts_gt)
        main[name] = max(new_ap - ap, 0.0) if not math.isnan(new_ap) else float("nan")
    special = {"FP": fixed(None, fp_oracle=True).mean_ap(classes, n_gt)[0] - ap,
               "FN": fixed(None).mean_ap(classes, n_gt - n_fn)[0] - ap}
    counts = {name: int(np.count_nonzero(code == e)) for name, e in
              zip(MAIN_ERRORS, (_CLS, _LOC, _BOTH, _DUPE, _BKG))}
    counts["Miss"] = int(miss.sum())
    return TideResult(ap=ap, main=main, special=special, counts=counts, n_images=n_img,
                      n_gt=n_gt_total, n_dets=n_eval, pos_thresh=pos_thresh,
                      bg_thresh=bg_thresh, per_class_ap=per_class)
