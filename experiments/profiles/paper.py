# The authors' recipe, cell for cell (sepc/exp/*.py of the SEPC release and the mmdetection 1.1
# configs they build on): R-50 with torchvision ImageNet weights, COCO 2017, 1x (12 epochs),
# total batch 16 = 8 GPUs x 2 images, or 4 GPUs x 4 images with iBN (the paper's text).
# The detector's _base_ already holds lr 0.01, momentum 0.9, wd 1e-4, warm-up, steps, clipping.
# What still differs from the original, and by how much it may matter:
# docs/differences-from-the-original.md.
bench = dict(
    description="the authors' recipe: mmdet 1.1 box conventions, their FSAF, faithful padding",
    data=dict(kind='coco'),                 # --data-root DIR: annotations/, train2017/, val2017/
    pretrained='torchvision://resnet50',    # or a local checkpoint path (--pretrained PATH)
    total_batch=16,                         # GPUs = total_batch / images per GPU of the variant
    lcconv_padding=0,                       # faithful (docs/differences-from-the-original.md)
    conventions='mmdet1',                   # anchors, coders, IoU, NMS, boxes as mmdet 1.1
    bases=dict(fsaf='fsaf_authors'),        # the release's own FSAF, not mmdet 3.x's
    min_size=32,                            # training images with a side < 32 px are skipped
    test_pad={'fsaf/baseline': 384},        # fsaf_baseline.py padded test images to 384 (else 32)
    schedule='epochs',                      # 12 epochs, checkpoint every epoch
    latency=dict(size=(800, 1344), warmup=50, iters=200,
                 paper_batch=8, paper_skip=100, paper_iters=200),
    slurm=dict(time_min=36 * 60, cpus_per_task=5, mem_gb=64, nodes=1),
    # `bench pilot`: a short timing (the forecast needs the per-call cost only), a short limit.
    pilot=dict(latency=dict(warmup=2, iters=3, paper_batch=2, paper_skip=0, paper_iters=1),
               slurm=dict(time_min=60)),
    # --from-checkpoints: the authors' models are evaluated, not trained, on one device
    # (fixed_batch: 1 GPU; the batch itself is unused) within a shorter time limit.
    released=dict(fixed_batch=2, slurm=dict(time_min=120, cpus_per_task=8, mem_gb=32, nodes=1)),
)
