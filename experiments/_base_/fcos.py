# FCOS R-50-FPN 1x: anchor-free, not in the SEPC paper (jshilong/SEPC#23 asked for it;
# docs/adding-a-detector.md). mmdet's FCOS R-50 1x as it is: P3-P7 with the extra levels from
# P5 (ReLU before them), points at strides 8-128 with size ranges 64/128/256/512, focal loss, IoU
# loss on decoded boxes, centre-ness (on the classification branch: centerness_on_reg=False, no
# centre sampling, no normalised distances), GN in the 4-conv towers, bias lr x2 without decay,
# clipping at 35, lr 0.01. Two changes: the backbone is torchvision's pytorch-style R-50 with its
# ImageNet normalisation, as in every other row (mmdet's FCOS trains the caffe-style R-50 with
# BGR means and unit std), and the paper recipe's schedule (a linear warm-up from 1/3 over 500
# iterations; mmdet's FCOS holds 1/3 constant).
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
custom_imports = dict(imports=['sepc'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True),
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True), style='pytorch',
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
