# The published recipe (sepc-spec.md): R-50 with torchvision ImageNet weights, COCO 2017,
# 1x (12 epochs), total batch 16 = 8 GPUs x 2 images, or 4 GPUs x 4 images with iBN.
# The detector's _base_ already holds lr 0.01, momentum 0.9, wd 1e-4, warm-up, steps, clipping.
bench = dict(
    description='published recipe, COCO 2017 (data root required), R-50 ImageNet, 1x',
    data=dict(kind='coco'),                 # --data-root DIR with annotations/, train2017/, val2017/
    pretrained='torchvision://resnet50',    # or a local checkpoint path (--pretrained PATH)
    total_batch=16,                         # GPUs = total_batch / images per GPU of the variant
    lcconv_padding=0,                       # faithful to the released models (see README)
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
