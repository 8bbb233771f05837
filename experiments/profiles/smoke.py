# The 15 cells shrunk for a CPU: ResNet-18 at base width 8 started from the warm start below (the
# analogue of ImageNet weights), FPN/SEPC width 32, ~256 px synthetic images, 1,200 iterations.
# Same detectors, heads, losses and variants as the paper profile; what differs is stated here.
bench = dict(
    description='CPU smoke test on embedded synthetic data (no download)',
    data=dict(kind='synthetic', n_train=400, n_val=100, image_size=256, seed=0),
    # The analogue of the paper's ImageNet weights (bench/run/pretrain.py): the backbone + FPN of
    # this detector trained once on the synthetic TRAINING split, cached per machine.
    pretrained='synthetic://',
    # From scratch every stage and BN layer trains; the cells then fine-tune it as the paper
    # fine-tunes ImageNet weights (stem and stage 1 frozen, BN statistics fixed).
    warmstart=dict(detector='retinanet', variant='baseline', iters=1200,
                   model=dict(backbone=dict(frozen_stages=-1, norm_eval=False))),
    # One device: every variant gets the same batch so that cells compare like for like
    # (the paper's 2 vs 4 images per GPU is about iBN statistics across 8 vs 4 GPUs).
    fixed_batch=4,
    # The baselines train two seeds per seed named: their stock heads are the noisiest cells
    # (seed sd 3.0 AP pooled against 1.9 for the SEPC variants), so a one-seed table's claims
    # against them need the second run (docs/statistics.md, "The smoke table's baselines").
    baseline_seeds=2,
    # The faithful padding 0 shrinks each level by 2 px: P7 of a 256 px image is 2 px wide.
    lcconv_padding=1,
    # The heads need on the order of a thousand iterations at this size, the stock heads
    # (baseline, PConv without iBN) the most, and then a short stretch at the low lr: the
    # RetinaNet baseline's AP50 climbs from ~22 at 800 iterations to ~31-37 at 1,100 at the full
    # lr, and 100 iterations after the 10x step it reads 38-43 (seeds 0 and 1). An earlier step
    # costs more than it saves (1,000 iterations stepped at 800: AP50 28-31; 1,200 stepped at
    # 900: 31-34), batch 2 or random crops learn slower per iteration (docs/performance.md,
    # "Choosing the budget"). `make table QUICK=1` trains the same cells 200 iterations.
    schedule='iters',
    max_iters=1200, val_interval=1200, checkpoint_interval=50,
    # NHWC convolutions: 10-15% faster training steps on a CPU without AVX-512, every variant
    # alike; with AVX-512, where oneDNN's NHWC backward of the first downsample conv corrupts the
    # heap, the hook keeps NCHW, which is as fast there (sepc/engine.py). Timing stays NCHW.
    channels_last=True,
    # One thread per cell and as many cells at once as cores: OpenMP threads of two processes
    # fighting over 2 cores made training 10x slower here; single-threaded cells do not.
    threads=1, workers=0,
    # Anchors at half the paper's size, as the images are: RetinaNet/FreeAnchor's P3 anchors
    # start at 16 px, P7's reach 400 px, so the synthetic 8-256 px objects span P3-P7.
    # ATSS's one anchor per location: 4 x stride instead of 8 x (32 px at P3, 256 px at P6).
    per_detector=dict(
        retinanet=dict(model=dict(bbox_head=dict(anchor_generator=dict(octave_base_scale=2)))),
        freeanchor=dict(model=dict(bbox_head=dict(anchor_generator=dict(octave_base_scale=2)))),
        atss=dict(model=dict(bbox_head=dict(anchor_generator=dict(octave_base_scale=4)))),
        # Faster R-CNN has no `bbox_head` for the delta below: its widths here (fc 4 x the
        # FPN's, as 1024 to 256), RPN anchors 4 x stride (16 px at P2, 256 at P6) and RoIs
        # mapped to levels at half the paper's sizes (finest_scale 28: below 56 px P2).
        faster_rcnn=dict(model=dict(
            rpn_head=dict(in_channels=32, feat_channels=32, anchor_generator=dict(scales=[4])),
            roi_head=dict(bbox_roi_extractor=dict(out_channels=32, finest_scale=28),
                          bbox_head=dict(in_channels=32, fc_out_channels=128)))),
        # FCOS's size ranges per level halved (P3 up to 32 px, ..., P7 from 256 px).
        fcos=dict(model=dict(bbox_head=dict(
            regress_ranges=((-1, 32), (32, 64), (64, 128), (128, 256), (256, 1e8))))),
    ),
    # A local sweep times the 5 cells of a detector round-robin after training
    # (bench/run/timing.py): 60 rounds keep the median ratios to the baseline steady on a shared
    # 2-core machine.
    latency=dict(size=(256, 256), warmup=10, iters=60,
                 paper_batch=8, paper_skip=2, paper_iters=4),
    slurm=dict(time_min=20, cpus_per_task=1, mem_gb=4, nodes=1, gpus_per_node=0),
    pilot=dict(latency=dict(warmup=2, iters=5, paper_batch=8, paper_skip=1, paper_iters=2),
               slurm=dict(time_min=15)),
    # --from-checkpoints (no smoke-size released models exist: the tests write their own): the
    # released models' cls/loc padding 0 needs P7 >= 3 px, i.e. inputs of at least 257 px
    # (padded to 288); 384 px leaves room. Short timings.
    released=dict(image_scale=384, latency=dict(size=(384, 384), warmup=1, iters=3,
                                                paper_batch=2, paper_skip=1, paper_iters=1)),
)

model = dict(
    backbone=dict(depth=18, base_channels=8, init_cfg=None),  # frozen_stages=1, norm_eval: mmdet's
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=32),
    bbox_head=dict(in_channels=32, feat_channels=32),
)
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=1200, milestones=[1100], gamma=0.1),
]
