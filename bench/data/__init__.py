"""Data: COCO-layout roots, checked before anything runs (``coco.py``), and the embedded
synthetic COCO-layout generator the smoke profile trains on (``synthetic.py``)."""
