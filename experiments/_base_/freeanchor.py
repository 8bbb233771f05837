# FreeAnchor R-50-FPN 1x (mmdet's config already has stds 0.1/0.2, SmoothL1 beta 0.11 x 0.75,
# pre_anchor_topk 50, bbox_thr 0.6, gamma 2, alpha 0.5, clip 35).
_base_ = 'mmdet::free_anchor/freeanchor_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['sepc'], allow_failed_imports=False)

param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
