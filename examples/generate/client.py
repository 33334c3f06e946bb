"""Stream generated text from a twinpipe server: each character is printed as it arrives.

    twinpipe serve --repository examples/generate/repository
    python examples/generate/client.py "the model " [--max-tokens 200] [--seed 7] [--url localhost:8001]

The ``generate`` pipeline tokenizes the prompt, generates one character per response (a Python
generator step calling the ``charlm`` model through the engine's batcher) and detokenizes each;
the client reads them through Triton's gRPC stream API.
"""

from __future__ import annotations

import argparse
import queue
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

__all__ = ["generate", "main"]


def generate(client: grpcclient.InferenceServerClient, prompt: str, max_tokens: int, seed: int = 0) -> Iterator[str]:
    """The generated characters, one by one as the server sends them."""
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        text = grpcclient.InferInput("prompt", [1], "BYTES")
        text.set_data_from_numpy(np.array([prompt.encode()], dtype=object))
        limit = grpcclient.InferInput("max_tokens", [1], "INT32")
        limit.set_data_from_numpy(np.array([max_tokens], np.int32))
        client.async_stream_infer("generate", [text, limit], parameters={"seed": seed}, enable_empty_final_response=True)
        while True:
            result, error = answers.get(timeout=60)
            if error is not None:
                raise error
            if result.get_response().parameters["triton_final_response"].bool_param:
                return  # the empty final response: the stream has ended
            yield result.as_numpy("token")[0].decode()
    finally:
        client.stop_stream(cancel_requests=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompt", nargs="?", default="the model ")
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--url", default="localhost:8001")
    args = ap.parse_args()
    client = grpcclient.InferenceServerClient(args.url)
    sys.stdout.write(args.prompt)
    for token in generate(client, args.prompt, args.max_tokens, args.seed):
        sys.stdout.write(token)
        sys.stdout.flush()
    sys.stdout.write("\n")
    client.close()


if __name__ == "__main__":
    main()
