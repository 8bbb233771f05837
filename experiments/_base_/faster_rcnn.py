# Faster R-CNN R-50-FPN 1x: the paper's two-stage claim ("The pyramid convolution also functions
# well as a stand-alone module in two-stage object detectors and is able to improve the
# performance by ~2AP", its abstract), which neither its table nor its release shows
# (docs/adding-a-detector.md, docs/differences-from-the-original.md).
# mmdet's config with mmdet 1.1's recipe, the SEPC authors' code base (the pieces mmdet's own
# legacy_1.x/faster-rcnn_r50_fpn_1x_coco_v1.py restores): SmoothL1 losses (beta 1/9 in the RPN,
# 1 in the RoI head; mmdet 3.x: L1), 2,000 RPN proposals per training image (3.x: 1,000),
# low-quality matches in the RoI head's assigner (1.1 always made them), gradient clipping at
# 35; with the paper recipe's schedule, as the other rows. The box conventions (anchors, coders,
# RoIAlign, NMS) are the profile's. The pyramid: FPN P2-P5 from C2-C5 and P6 max-pooled from
# P5, the RPN's anchors at strides 4-64 (three ratios, 8 x stride), RoIs pooled from P2-P5. The
# PConv variant puts the stand-alone PConv neck after the FPN, feeding the RPN and the RoI head.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['sepc'], allow_failed_imports=False)

model = dict(
    rpn_head=dict(loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=1.0 / 9.0,
                                 loss_weight=1.0)),
    roi_head=dict(bbox_head=dict(loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=1.0,
                                                loss_weight=1.0))),
    train_cfg=dict(rpn_proposal=dict(max_per_img=2000),
                   rcnn=dict(assigner=dict(match_low_quality=True))))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
