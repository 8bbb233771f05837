# FSAF as the SEPC release trained it (sepc/exp/fsaf/*.py: the authors' own FSAF on mmdet 1.1;
# sepc/legacy_fsaf.py): mmdet 3.x's FSAFHead computing the same online feature selection, with the
# release's assigner, loss on encoded distances, box coder and regression bias. What stays the
# same as fsaf.py: anchors (one per location, stride-sized), focal loss, clip 10, test settings.
_base_ = './fsaf.py'

model = dict(
    bbox_head=dict(
        bbox_coder=dict(_delete_=True, type='LegacyTBLRBBoxCoder'),  # no /4, "+1", (b, t, l, r)
        reg_decoded_bbox=False,  # the loss reads the encoded distances
        loss_bbox=dict(_delete_=True, type='IoULossTBLR', eps=1e-6, loss_weight=1.0,
                       reduction='none'),
        init_cfg=dict(type='Normal', layer='Conv2d', std=0.01, override=[
            dict(type='Normal', name='retina_cls', std=0.01, bias_prob=0.01),
            dict(type='Normal', name='retina_reg', std=0.01, bias=1.0)])),  # mmdet 3.x: 0.25
    train_cfg=dict(assigner=dict(_delete_=True, type='EffectiveAreaAssigner', pos_area_thr=0.2,
                                 neg_area_thr=0.2, min_pos_iof=0.01)))
