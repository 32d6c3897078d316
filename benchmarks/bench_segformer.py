"""Training-step throughput of dlvc's SegFormer-B0 against transformers', side by side.

    python benchmarks/bench_segformer.py                 # CPU, 4x3x256x256, fp32
    python benchmarks/bench_segformer.py --device cuda --amp --channels-last

One step is forward, cross-entropy on the logits at the input size, backward and an
AdamW step, on the same batch for both models (same configuration: B0, 19 classes).
The two models take turns, and the median of ``--repeats`` steps is reported with
the ratio transformers / dlvc (above 1: dlvc is faster).
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from dlvc.models.segformer import SegFormer


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs=4, default=(4, 3, 256, 256), help="B C H W (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per model (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="(default: %(default)s)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format for model and batch")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: %(default)s)")
    return parser.parse_args(argv)


def transformers_model(num_classes: int) -> torch.nn.Module:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(num_labels=num_classes)  # the defaults are B0
    model = SegformerForSemanticSegmentation(config)

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, images):
            logits = self.model(pixel_values=images).logits  # (B, K, H/4, W/4)
            return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    return Logits()


def make_step(model, images, targets, args):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with torch.autocast(device_type=images.device.type, dtype=torch.bfloat16, enabled=args.amp):
            loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if images.device.type == "cuda":
            torch.cuda.synchronize()

    return step


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"configuration: {vars(args)}, torch {torch.__version__}")
    torch.manual_seed(0)
    batch, _, height, width = args.batch
    images = torch.randn(*args.batch, device=device)
    targets = torch.randint(0, 19, (batch, height, width), device=device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    images = images.to(memory_format=memory_format)
    models = {"dlvc": SegFormer.from_variant("b0", 19), "transformers": transformers_model(19)}
    steps = {}
    for name, model in models.items():
        model.to(device, memory_format=memory_format).train()
        steps[name] = make_step(model, images, targets, args)
        for _ in range(args.warmup):
            steps[name]()
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in medians.items():
        print(f"  {name:<13} {seconds * 1e3:9.1f} ms/step  {batch / seconds:7.2f} images/s")
    print(f"ratio transformers / dlvc: {medians['transformers'] / medians['dlvc']:.2f}x (above 1: dlvc is faster)")


if __name__ == "__main__":
    main(parse_args())
