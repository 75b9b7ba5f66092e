"""Decoding overlapped with the model: while the caller scores one batch, threads decode the next.

    for chunk, decoded in decode_ahead(sources, decode, batch_size=64, threads=2):
        ...   # decoded[i] = decode(chunk[i]); the next chunk is being decoded meanwhile

Threads, not processes: Pillow and torch release the GIL while they decode and resize, and a thread
shares the photo with the model without a copy. How many is the model's choice (Backend.decoding_threads):
one beside PyTorch, whose model already keeps every core busy; every core beside ONNX Runtime.
"""

from concurrent.futures import ThreadPoolExecutor


def decode_ahead(sources, decode, batch_size, threads):
    """Yield (chunk, [decode(source) for source in chunk]) per batch of `sources`, in order, with the next
    batch decoded in `threads` threads while the caller works on this one."""
    sources = list(sources)
    chunks = [sources[start:start + batch_size] for start in range(0, len(sources), batch_size)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        def submit(n):
            return [pool.submit(decode, source) for source in chunks[n]] if n < len(chunks) else []

        pending = submit(0)
        for n, chunk in enumerate(chunks):
            decoded, pending = [future.result() for future in pending], submit(n + 1)
            yield chunk, decoded
