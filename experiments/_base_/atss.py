# ATSS R-50-FPN 1x: not in the SEPC paper; UniverseNet ported SEPC to it
# (docs/adding-a-detector.md).
# mmdet's config as it is: one square anchor per location (octave_base_scale 8, scales_per_octave
# 1), ATSSAssigner top-9, focal loss, GIoU loss x2 on decoded boxes (DeltaXYWHBBoxCoder, stds
# 0.1/0.1/0.2/0.2), centerness, GN in the 4-conv head tower, no gradient clipping. With the
# paper recipe's schedule, as the other detectors.
_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['sepc'], allow_failed_imports=False)

param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
