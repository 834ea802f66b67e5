"""The PyTorch baselines on serving shapes: SDPA and FlexAttention on decode (over the gathered cache),
varlen (SDPA on a padded batch, flex with a document mask) and windowed / soft-capped problems.

What each times (the callable the harness times does all of it, since the harness refreshes the inputs'
contents in place before every timed call):

* decode, paged cache: the gather of the cache through the page table into a contiguous
  ``[b, sk, hkv, d]`` K and V, then the attention call. A server that keeps a paged cache and uses SDPA
  pays that copy every step; the fused paged kernels (FlashInfer, FlashAttention with a page table) do not.
  Contiguous cache: the attention call alone.
* varlen, SDPA: the scatter of the packed tokens into a zero-padded ``[b, max_len, h, d]`` batch, the
  attention call on it (causal: ``is_causal``, exact for every real row because each sequence starts at
  position 0; otherwise a key-padding mask), and the gather of the real rows back. The FLOPs count real
  tokens only, so the padded work shows as lost TFLOPS.
* varlen, flex: one call over the packed tokens as a single sequence with a block mask that keeps each
  token inside its own sequence (a document mask), causal and window within it.
* window: SDPA with an explicit boolean mask (the kernels that refuse masks are skipped with PyTorch's
  reason); flex with a mask_mod. Soft-capping: flex with a score_mod (``cap·tanh(s/cap)``); SDPA has none.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from harness.spec import attention_math
from harness.spec.kinds import masks
from harness.spec.problem import Problem


def is_serving(problem: Problem) -> bool:
    """Whether a problem needs these paths rather than a backend's plain dense one."""
    return (problem.kind != "dense" or masks.windowed(problem.window_left, problem.window_right)
            or bool(problem.softcap) or problem.dtype.startswith("float8"))


def _gathered(problem: Problem, k: torch.Tensor, v: torch.Tensor) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    from harness.measure import inputs_decode

    if problem.kind != "decode" or not problem.page_size:
        return lambda: (k, v)
    slots = inputs_decode.paging(problem, k.device).token_slots.clone()
    kf, vf = k.view(-1, *k.shape[2:]), v.view(-1, *v.shape[2:])
    return lambda: (kf[slots], vf[slots])


# -- SDPA -----------------------------------------------------------------------------------------------
def _sdpa_mask(problem: Problem, sq: int, sk: int, device: torch.device) -> dict[str, Any]:
    """The mask keywords for a (sub)problem of sq queries and sk keys: none, is_causal, lower-right causal,
    or an explicit boolean mask for a window."""
    if masks.windowed(problem.window_left, problem.window_right):
        return {"attn_mask": attention_math.window_keep(problem, sq, sk, 0, sq, device)}
    if not problem.causal or sq == 1:  # one query row at the bottom right attends every key
        return {}
    if sq == sk:
        return {"is_causal": True}
    from torch.nn.attention.bias import causal_lower_right

    return {"attn_mask": causal_lower_right(sq, sk)}


def sdpa_run(problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             sdpa: Callable[..., torch.Tensor], expand_gqa: bool = False) -> Callable[[], torch.Tensor]:
    """The timed callable of an SDPA backend (``sdpa(q, k, v, **kw)`` runs the forced kernel, bhsd).
    ``expand_gqa``: the kernel takes no ``enable_gqa`` (memory-efficient, cuDNN), so K and V are repeated to
    the query heads inside the timed call, as a user of that kernel must."""
    if problem.softcap:
        from harness.backends.base import Unsupported

        raise Unsupported("SDPA has no logit soft-capping")
    kw: dict[str, Any] = {"scale": problem.softmax_scale}
    group = problem.heads_q // problem.heads_kv
    if group > 1 and expand_gqa:
        inner = sdpa

        def sdpa(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor, **kw2: Any) -> torch.Tensor:  # noqa: F811
            return inner(qh, kh.repeat_interleave(group, dim=1), vh.repeat_interleave(group, dim=1), **kw2)
    elif group > 1:
        kw["enable_gqa"] = True
    if problem.kind == "varlen":
        return _sdpa_padded(problem, q, k, v, sdpa, kw)
    cache = _gathered(problem, k, v)
    kw.update(_sdpa_mask(problem, problem.seqlen_q, problem.seqlen_k, q.device))
    qh = q.transpose(1, 2)

    def run() -> torch.Tensor:
        kc, vc = cache()
        return sdpa(qh, kc.transpose(1, 2), vc.transpose(1, 2), **kw).transpose(1, 2)

    return run


def _sdpa_padded(problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 sdpa: Callable[..., torch.Tensor], kw: dict[str, Any]) -> Callable[[], torch.Tensor]:
    from harness.measure import inputs_varlen

    b, s = problem.batch, problem.seqlen_q
    bi, pos = inputs_varlen.pad_index(problem, q.device)
    lengths = torch.tensor(problem.seq_lengths(), device=q.device)
    windowed = masks.windowed(problem.window_left, problem.window_right)
    if windowed or not problem.causal:
        keep = torch.arange(s, device=q.device)[None, :] < lengths[:, None]  # [b, s] real keys
        keep = keep[:, None, None, :]
        if windowed:
            keep = keep & attention_math.window_keep(problem, s, s, 0, s, q.device)
        kw["attn_mask"] = keep
    else:
        kw["is_causal"] = True

    def padded(x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros((b, s, *x.shape[1:]))
        out[bi, pos] = x
        return out.transpose(1, 2)

    def run() -> torch.Tensor:
        o = sdpa(padded(q), padded(k), padded(v), **kw)  # b h s d
        return o.transpose(1, 2)[bi, pos]

    return run


# -- flex ------------------------------------------------------------------------------------------------
def _window_mod(problem: Problem, offset: int) -> Callable[..., Any] | None:
    """mask_mod of causal and/or a window for a (sub)problem whose keys are offset by ``offset``."""
    lo_b = offset - problem.window_left if problem.window_left >= 0 else None
    hi_b = offset if problem.causal else (offset + problem.window_right if problem.window_right >= 0 else None)
    if lo_b is None and hi_b is None:
        return None

    def mod(b, h, q_idx, kv_idx):
        ok = kv_idx >= 0
        if lo_b is not None:
            ok = ok & (kv_idx >= q_idx + lo_b)
        if hi_b is not None:
            ok = ok & (kv_idx <= q_idx + hi_b)
        return ok

    return mod


def softcap_mod(problem: Problem) -> Callable[..., Any] | None:
    if not problem.softcap:
        return None
    cap = problem.softcap

    def mod(score, b, h, q_idx, kv_idx):
        return torch.tanh(score / cap) * cap

    return mod


_MASKS: dict[tuple[str, str], Any] = {}


def _block_mask(problem: Problem, mod: Callable[..., Any], sq: int, sk: int, device: torch.device) -> Any:
    """One block mask per problem, shared by its prepares (the harness prepares a call per timing buffer);
    a large one is built compiled, not from the materialised [sq, sk] grid."""
    from torch.nn.attention.flex_attention import create_block_mask

    key = (problem.key(), str(device))
    if key not in _MASKS:
        _MASKS.clear()
        _MASKS[key] = create_block_mask(mod, None, None, sq, sk, device=device, _compile=sq * sk > 1 << 26)
    return _MASKS[key]


def flex_run(problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             flex: Callable[..., torch.Tensor]) -> Callable[[], torch.Tensor]:

    kw: dict[str, Any] = {"scale": problem.softmax_scale}
    if problem.heads_q != problem.heads_kv:
        kw["enable_gqa"] = True
    score = softcap_mod(problem)
    if score is not None:
        kw["score_mod"] = score
    if problem.kind == "varlen":
        from harness.measure import inputs_varlen

        total = q.shape[0]
        doc = inputs_varlen.token_seq(problem, q.device).clone()  # the harness keeps its own
        inner = _window_mod(problem, 0)

        def document(b, h, q_idx, kv_idx):
            same = doc[q_idx] == doc[kv_idx]
            return same if inner is None else same & inner(b, h, q_idx, kv_idx)

        kw["block_mask"] = _block_mask(problem, document, total, total, q.device)
        qh, kh, vh = (t.unsqueeze(0).transpose(1, 2) for t in (q, k, v))
        return lambda: flex(qh, kh, vh, **kw).transpose(1, 2)[0]
    sq, sk = problem.seqlen_q, problem.seqlen_k
    mod = _window_mod(problem, sk - sq)
    if mod is not None:
        kw["block_mask"] = _block_mask(problem, mod, sq, sk, q.device)
    cache = _gathered(problem, k, v)
    qh = q.transpose(1, 2)

    def run() -> torch.Tensor:
        kc, vc = cache()
        return flex(qh, kc.transpose(1, 2), vc.transpose(1, 2), **kw).transpose(1, 2)

    return run


def eager_sdpa(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor, **kw: Any) -> torch.Tensor:
    return F.scaled_dot_product_attention(qh, kh, vh, **kw)
