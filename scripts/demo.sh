#!/usr/bin/env bash
# The main job until the end-to-end training demo lands: segment an image with a model.
#   make demo                                  a built-in picture, an untrained FCN-8s
#   make demo MODEL=m.safetensors IMAGE=x.jpg  your own model and image
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=${OUT:-demo-out}
mkdir -p "$OUT"

MODEL=${MODEL:-$OUT/fcn8s-untrained.safetensors}
if [ ! -f "$MODEL" ]; then
  "$BIN/fcnxs" create --arch fcn8s --seed 0 -o "$MODEL" | tail -n 1
fi

IMAGE=${IMAGE:-$OUT/sample.jpg}
if [ ! -f "$IMAGE" ]; then
  "$BIN/python" - "$IMAGE" <<'PY'
import sys
import numpy as np
from PIL import Image, ImageDraw

# A 375×500 picture (VOC's usual size): a sky-to-ground gradient with a few shapes.
h, w = 375, 500
y = np.linspace(0, 1, h)[:, None, None]
img = (np.array([90, 140, 220]) * (1 - y) + np.array([70, 120, 60]) * y).repeat(w, axis=1)
image = Image.fromarray(img.astype(np.uint8))
draw = ImageDraw.Draw(image)
draw.ellipse((60, 120, 220, 300), fill=(200, 40, 40))
draw.rectangle((280, 180, 450, 330), fill=(240, 220, 60))
image.save(sys.argv[1], quality=95)
PY
fi

time "$BIN/fcnxs" segment "$IMAGE" --model "$MODEL" -o "$OUT/masks" --logits
echo "demo: wrote $OUT/masks/$(basename "${IMAGE%.*}").png (palette PNG of class indices)"
