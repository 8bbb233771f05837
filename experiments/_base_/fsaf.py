# FSAF R-50-FPN 1x (mmdet's config: one anchor per location, IoU loss on TBLR targets, focal
# loss, clip 10).
_base_ = 'mmdet::fsaf/fsaf_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['sepc'], allow_failed_imports=False)

param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
