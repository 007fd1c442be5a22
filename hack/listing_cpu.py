#!/usr/bin/env python3
"""CPU per model listing: what validating one new key costs the operator's process.

Starts the provider stand-in as a process, lists models for N distinct keys through the
operator's lister (the official SDK over one pooled client, as in production) and prints the
CPU-milliseconds and wall-milliseconds per listing, median and min-max over the rounds.

    .venv/bin/python hack/listing_cpu.py [--provider openai|anthropic] [--keys 300] [--rounds 5]

Compare two checkouts by running this copy with PYTHONPATH pointing at each one's
``operator/`` (both measured in the same session, back to back).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from cpu_figures import process_cpu, spread

from byok_dev.provider_stub import ProviderStub
from byok_operator.providers.anthropic import AnthropicModelLister
from byok_operator.providers.listing import SdkModelLister
from byok_operator.providers.openai import OpenAIModelLister


async def _round(lister: SdkModelLister, prefix: str, keys: int) -> tuple[float, float]:
    await lister.list_models(f"{prefix}warm-up-key")  # the pool's first connection and SSL setup
    cpu, wall = process_cpu(), time.perf_counter()
    for i in range(keys):
        await lister.list_models(f"{prefix}tenant-{i:06d}-abcdefghijklmnop")
    return (process_cpu() - cpu) / keys * 1000, (time.perf_counter() - wall) / keys * 1000


async def _measure(provider: str, base_url: str, keys: int) -> tuple[float, float]:
    lister: SdkModelLister
    if provider == "openai":
        lister, prefix = OpenAIModelLister(base_url=base_url), "sk-"
    else:
        lister, prefix = AnthropicModelLister(base_url=base_url), "sk-ant-"
    async with lister:
        return await _round(lister, prefix, keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=("openai", "anthropic"), default="openai")
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as state,
        ProviderStub.in_subprocess(state_file=Path(state) / "stub.json") as stub,
    ):
        base_url = stub.openai_base_url if args.provider == "openai" else stub.anthropic_base_url
        rounds = [
            asyncio.run(_measure(args.provider, base_url, args.keys)) for _ in range(args.rounds)
        ]
    print(
        f"{args.provider}: {args.keys} keys x {args.rounds} rounds; per listing, median (min-max): "
        f"CPU {spread([r[0] for r in rounds])} ms, wall {spread([r[1] for r in rounds])} ms"
    )


if __name__ == "__main__":
    main()
