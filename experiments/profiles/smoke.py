# The 15 cells shrunk for a CPU: ResNet-18 at base width 16 without pretrained weights, FPN/SEPC
# width 32, ~320 px synthetic images, a few hundred iterations. Same detectors, heads, losses
# and variants as the paper profile; what differs is stated here.
bench = dict(
    description='CPU smoke test on embedded synthetic data (no download)',
    data=dict(kind='synthetic', n_train=400, n_val=100, image_size=320, seed=0),
    pretrained=None,
    # One device: every variant gets the same batch so that cells compare like for like
    # (the paper's 2 vs 4 images per GPU is about iBN statistics across 8 vs 4 GPUs).
    fixed_batch=4,
    # The faithful padding 0 shrinks each level by 2 px: P7 of a 320 px image is 3 px wide.
    lcconv_padding=1,
    schedule='iters',
    max_iters=300, val_interval=300, checkpoint_interval=50,
    threads=2, workers=0,
    latency=dict(size=(320, 320), warmup=10, iters=30,
                 paper_batch=8, paper_skip=3, paper_iters=6),
    slurm=dict(time_min=20, cpus_per_task=1, mem_gb=4, nodes=1, gpus_per_node=0),
)

model = dict(
    backbone=dict(depth=18, base_channels=16, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    bbox_head=dict(in_channels=32, feat_channels=32),
)
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=300, milestones=[240], gamma=0.1),
]
