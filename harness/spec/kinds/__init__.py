"""Problem kinds beyond the dense fixed-length forward, and the masks every kind may carry.

``dense`` (the default) is ``harness.spec.problem``'s own; ``decode`` (a few query tokens per sequence
against a long, possibly paged KV cache) and ``varlen`` (sequences of different lengths packed with
``cu_seqlens``) are described in their modules here; ``masks`` holds the local-window and soft-cap
semantics and the attended-pair counts all kinds share. Plain data, no torch.
"""
KINDS = ("dense", "decode", "varlen")
