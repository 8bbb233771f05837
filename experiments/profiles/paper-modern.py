# The paper's recipe on a clean modern baseline: does SEPC's gain hold there? The same data,
# backbone, schedule, batch and optimiser as `paper`, with mmdet 3.x's own box conventions
# (anchors centred on their location, no "+1"), mmdet 3.x's FSAF (CenterRegionAssigner, IoU
# loss on decoded boxes, TBLR coder with /4) and the corrected cls/loc padding 1, so that every
# head output reads the location its anchor is centred on. Crowd boxes reach the heads as
# ignore regions and every cell pads test images to 32, as mmdet 3.x's configs do.
_base_ = ['./paper.py']

bench = dict(
    description="the paper's recipe with mmdet 3.x conventions, its FSAF, corrected padding",
    conventions='mmdet3',
    lcconv_padding=1,
    bases=dict(_delete_=True),
    test_pad=dict(_delete_=True),
)
