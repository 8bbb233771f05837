# RetinaNet R-50-FPN 1x, as the SEPC paper trained it (mmdet 1.1 recipe on mmdet 3.x).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['sepc'], allow_failed_imports=False)

model = dict(
    # mmdet 1.1 used SmoothL1 with beta 0.11 (mmdet 3.x's config switched to L1).
    bbox_head=dict(loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=0.11,
                                  loss_weight=1.0)))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
