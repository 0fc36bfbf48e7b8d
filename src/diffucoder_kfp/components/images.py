"""Container images the components run in (built from ``images/``, tagged with the version).

The registry can be changed at compile time with ``DIFFUCODER_IMAGE_REGISTRY``; the
committed compiled pipeline uses the default. One definition (``diffucoder.kube.image_ref``)
names the images for the components, the cluster jobs and ``images/build.sh``.
"""
from diffucoder.kube.config import image_ref

BASE_IMAGE = image_ref("base")    # CPU: curate, evaluate, launchers, deploy
TRAIN_IMAGE = image_ref("train")  # CUDA + DeepSpeed: in-process training steps, TrainJob pods
SERVE_IMAGE = image_ref("serve")  # KServe model server

ALL_IMAGES = {"base": BASE_IMAGE, "train": TRAIN_IMAGE, "serve": SERVE_IMAGE}
