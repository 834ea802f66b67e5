"""Formulas that recompute what a claim asserts without running anything: H100 occupancy, attention
memory traffic, FLOPs, and plain arithmetic.

H100 (sm_90) per-SM limits, from the CUDA C++ Programming Guide's "Technical Specifications per
Compute Capability" table and ``cuda_occupancy.h``:
  65536 32-bit registers (4 sub-partitions of 16384), allocated per warp in units of 256;
  228 KiB shared memory per SM, at most 227 KiB per block, 1 KiB reserved by the system per block,
  allocated in 128-byte units; 2048 threads = 64 warps; 32 resident blocks.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.spec.problem import DTYPE_BYTES, Problem

REGS_PER_SM = 65536
REG_SUBPARTITIONS = 4
REG_ALLOC_UNIT = 256
MAX_REGS_PER_THREAD = 255
SMEM_PER_SM = 228 * 1024
SMEM_PER_BLOCK_MAX = 227 * 1024
SMEM_RESERVED_PER_BLOCK = 1024
SMEM_ALLOC_UNIT = 128
MAX_THREADS_PER_SM = 2048
MAX_WARPS_PER_SM = 64
MAX_BLOCKS_PER_SM = 32
WARP = 32


class FormulaError(ValueError):
    pass


@dataclass(frozen=True)
class Occupancy:
    blocks_by_regs: int
    blocks_by_smem: int
    blocks_by_threads: int
    blocks_by_warps: int
    blocks_cap: int
    blocks_per_sm: int
    warps_per_block: int
    warps_per_sm: int
    occupancy_pct: float  # theoretical: resident warps / 64
    max_warps_per_sm: int = MAX_WARPS_PER_SM
    max_threads_per_sm: int = MAX_THREADS_PER_SM

    def limiter(self) -> str:
        limits = {
            "registers": self.blocks_by_regs,
            "shared memory": self.blocks_by_smem,
            "threads": self.blocks_by_threads,
            "32-block cap": self.blocks_cap,
        }
        low = min(limits.values())
        return " and ".join(k for k, v in limits.items() if v == low)


def occupancy(regs_per_thread: int, threads_per_block: int, smem_bytes: int) -> Occupancy:
    """Theoretical blocks per SM on an H100, as cuda_occupancy.h computes them."""
    if not 1 <= threads_per_block <= 1024:
        raise FormulaError(f"threads_per_block={threads_per_block}: must be 1..1024")
    if not 1 <= regs_per_thread <= MAX_REGS_PER_THREAD:
        raise FormulaError(f"regs_per_thread={regs_per_thread}: must be 1..{MAX_REGS_PER_THREAD}")
    if smem_bytes < 0:
        raise FormulaError(f"smem_bytes={smem_bytes}: must be >= 0")
    warps = math.ceil(threads_per_block / WARP)
    # registers: each warp takes a multiple of 256; warps are placed within one of 4 sub-partitions
    regs_per_warp = math.ceil(regs_per_thread * WARP / REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    warps_by_regs = (REGS_PER_SM // REG_SUBPARTITIONS // regs_per_warp) * REG_SUBPARTITIONS
    by_regs = warps_by_regs // warps
    if smem_bytes > SMEM_PER_BLOCK_MAX:
        by_smem = 0
    else:
        smem = math.ceil(smem_bytes / SMEM_ALLOC_UNIT) * SMEM_ALLOC_UNIT + SMEM_RESERVED_PER_BLOCK
        by_smem = SMEM_PER_SM // smem
    by_threads = MAX_THREADS_PER_SM // (warps * WARP)
    by_warps = MAX_WARPS_PER_SM // warps
    blocks = min(by_regs, by_smem, by_threads, by_warps, MAX_BLOCKS_PER_SM)
    return Occupancy(
        blocks_by_regs=by_regs,
        blocks_by_smem=by_smem,
        blocks_by_threads=by_threads,
        blocks_by_warps=by_warps,
        blocks_cap=MAX_BLOCKS_PER_SM,
        blocks_per_sm=blocks,
        warps_per_block=warps,
        warps_per_sm=blocks * warps,
        occupancy_pct=100.0 * blocks * warps / MAX_WARPS_PER_SM,
    )


OCCUPANCY_QUANTITIES = (
    "blocks_per_sm",
    "warps_per_sm",
    "occupancy_pct",
    "blocks_by_regs",
    "blocks_by_smem",
    "blocks_by_threads",
    "blocks_by_warps",
    "max_warps_per_sm",
    "max_threads_per_sm",
)

# -- memory traffic ----------------------------------------------------------------------------
TRAFFIC_QUANTITIES = (
    "q_read",
    "k_read",
    "v_read",
    "qkv_read",
    "o_write",
    "s_write",
    "s_read",
    "p_write",
    "p_read",
    "fused_total",
    "unfused_total",
)
BYTE_UNITS = {
    "B": 1,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "TB": 1e12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}


def traffic(problem: Problem, quantity: str, score_dtype: str = "") -> float:
    """Bytes moved to or from device memory by one forward call.

    fused: Q, K, V read once and O written once (= Problem.min_bytes()). unfused (separate GEMM, softmax,
    GEMM kernels): additionally the score matrix S and the probabilities P, each B·H·Sq·Sk elements,
    written once and read once, in ``score_dtype`` (default: the problem's dtype)."""
    e = DTYPE_BYTES[problem.dtype]
    es = DTYPE_BYTES[score_dtype or problem.dtype]
    q = problem.batch * problem.heads_q * problem.seqlen_q * problem.head_dim * e
    kv = problem.batch * problem.heads_kv * problem.seqlen_k * problem.head_dim * e
    s = problem.batch * problem.heads_q * problem.seqlen_q * problem.seqlen_k * es
    parts = {
        "q_read": q,
        "k_read": kv,
        "v_read": kv,
        "qkv_read": q + 2 * kv,
        "o_write": q,
        "s_write": s,
        "s_read": s,
        "p_write": s,
        "p_read": s,
    }
    parts["fused_total"] = q + 2 * kv + q
    parts["unfused_total"] = parts["fused_total"] + 4 * s
    if quantity not in parts:
        raise FormulaError(f"quantity={quantity!r}: allowed {', '.join(TRAFFIC_QUANTITIES)}")
    return float(parts[quantity])


FLOP_UNITS = {"FLOP": 1, "KFLOP": 1e3, "MFLOP": 1e6, "GFLOP": 1e9, "TFLOP": 1e12, "PFLOP": 1e15}

# -- arithmetic --------------------------------------------------------------------------------
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_FUNCS: dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "ceil": math.ceil,
    "floor": math.floor,
    "sqrt": math.sqrt,
    "log2": math.log2,
    "abs": abs,
}


def evaluate(expr: str) -> float:
    """A number from an arithmetic expression: literals, + - * / // % **, parentheses and
    min/max/ceil/floor/sqrt/log2/abs. Nothing else is evaluated (claims files are data, not code)."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"expr {expr!r} is not an arithmetic expression: {exc.msg}") from None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool)
        ):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS
            and not node.keywords
        ):
            return _FUNCS[node.func.id](*[ev(a) for a in node.args])
        raise FormulaError(
            f"expr {expr!r}: only numbers, + - * / // % **, parentheses and {', '.join(_FUNCS)} are allowed"
        )

    try:
        return float(ev(tree))
    except ZeroDivisionError:
        raise FormulaError(f"expr {expr!r} divides by zero") from None
    except (ValueError, OverflowError, TypeError) as exc:  # sqrt(-1), 10.0**999, min() of nothing
        raise FormulaError(f"expr {expr!r}: {exc}") from None
