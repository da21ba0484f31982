"""The quickstart's training step in PyTorch, for BENCHMARKS.md: images/s of the same small ResNet
(configs/models/resnet_digits.toml: BasicBlock, one block per stage, channels 16-32-64-128, 3×3 stem without
max-pool, 10 classes) on batches of 64 random 3×32×32 images, SGD momentum 0.9 Nesterov, weight decay 5e-4,
forward + cross-entropy + backward + step, on the CPU with a given number of threads.

ftcal's figure to compare is the images/s `ftcal run configs/quickstart.toml` logs per epoch (log.txt),
which also includes decoding and augmenting the batches on the same cores.

    ~/.cache/torchenv/bin/python scripts/bench_torch_quickstart.py --threads 2
"""

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_small_resnet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    images = torch.randn(64, 3, 32, 32)
    labels = torch.randint(0, 10, (64,))
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"torch {torch.__version__}, {args.threads} threads: {median * 1000:.1f} ms/step, {64 / median:.0f} images/s")


def build_small_resnet() -> torch.nn.Module:
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.down is None else self.down(x)
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + identity)

    widths = [16, 32, 64, 128]
    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for index, width in enumerate(widths):
        layers.append(Block(cin, width, 1 if index == 0 else 2))
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)]
    return nn.Sequential(*layers)


if __name__ == "__main__":
    main()
