"""Position-wise feed-forward networks (sheet sections 1 and 6).

    MLP:     FFN(x) = down(act(up(x)))                       (Vaswani et al. 2017; GELU in BERT/GPT-2)
    SwiGLU:  FFN(x) = down(silu(gate(x)) * up(x))            (Shazeer 2020, "GLU Variants"; LLaMA)
    GeGLU:   FFN(x) = down(gelu(gate(x)) * up(x))            (Shazeer 2020; FLAN-T5)

The gated forms use three matrices, so LLaMA shrinks d_ff to ~8/3 d_model to keep
the parameter count of a 4 d_model MLP.

    MoE:     y = sum_{e in top-k(p)} (p_e / sum_top-k p) SwiGLU_e(x),  p = softmax(router(x))
                                                              (Shazeer 2017; Mixtral, Jiang et al. 2024)

API for the families: ``build_ffn(spec)`` returns MLP (ffn_kind "mlp", activation gelu /
gelu_tanh / relu, biases per spec.ffn_bias), GLU (swiglu: silu, geglu: gelu or gelu_tanh per
spec.activation) or, when spec.is_moe, MoE. Parameter names: MLP ``up``, ``down``; GLU ``gate``,
``up``, ``down`` (nn.Linear); MoE ``router.weight`` [E, d], ``gate_up`` [E, 2 d_ff, d] and
``down`` [E, d, d_ff] (see MoE). ``MoE.router_logits`` keeps the last call's router logits
[tokens, E] for :func:`load_balancing_loss`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from llmkit import kernels
from llmkit.nn.linear import Linear
from llmkit.spec import ModelSpec

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


class MLP(nn.Module):
    """down(act(up(x))): d_model -> d_ff -> d_model."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.act = ACTIVATIONS[spec.activation]
        self.up = Linear(spec.d_model, spec.d_ff, bias=spec.ffn_bias)
        self.down = Linear(spec.d_ff, spec.d_model, bias=spec.ffn_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


def fused_silu_ok(gate: torch.Tensor, up: torch.Tensor) -> bool:
    """The C kernel may overwrite ``gate`` with silu(gate) * up: float32, contiguous, no autograd, CPU."""
    return (gate.dtype == up.dtype == torch.float32 and gate.shape == up.shape and gate.is_contiguous()
            and up.is_contiguous() and gate.device.type == "cpu" and not torch.is_grad_enabled()
            and kernels.enabled())


class GLU(nn.Module):
    """down(act(gate(x)) * up(x)): SwiGLU with silu, GeGLU with gelu (Shazeer 2020)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.act = ACTIVATIONS[spec.activation]
        self.gate = Linear(spec.d_model, spec.d_ff, bias=spec.ffn_bias)
        self.up = Linear(spec.d_model, spec.d_ff, bias=spec.ffn_bias)
        self.down = Linear(spec.d_ff, spec.d_model, bias=spec.ffn_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate(x), self.up(x)  # [batch, seq, d_ff] each
        if self.act is F.silu and fused_silu_ok(gate, up):
            return self.down(kernels.silu_mul_(gate, up))  # the same product in one pass (llmkit.kernels)
        return self.down(self.act(gate) * up)  # [batch, seq, d_model]


class MoE(nn.Module):
    """Mixtral's sparse MoE: a router picks the top-k of E SwiGLU experts per token, weights renormalised.

    Parameters (stacked, as transformers 5 stores Mixtral; io maps the names):

        router.weight  [E, d_model]             <- mlp.gate.weight
        gate_up        [E, 2 d_ff, d_model]     <- mlp.experts.gate_up_proj   (rows: gate then up)
        down           [E, d_model, d_ff]       <- mlp.experts.down_proj

    (Older Mixtral checkpoints keep experts.{e}.w1 (gate), w3 (up), w2 (down): stack
    cat(w1, w3) into gate_up[e] and w2 into down[e].)
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.n_experts, self.k, self.d_ff = spec.n_experts, spec.experts_per_token, spec.d_ff
        self.act = ACTIVATIONS[spec.activation]
        self.router = nn.Linear(spec.d_model, spec.n_experts, bias=False)
        self.gate_up = nn.Parameter(torch.empty(spec.n_experts, 2 * spec.d_ff, spec.d_model))
        self.down = nn.Parameter(torch.empty(spec.n_experts, spec.d_model, spec.d_ff))
        nn.init.normal_(self.gate_up, std=0.02)
        nn.init.normal_(self.down, std=0.02)
        self.router_logits: torch.Tensor | None = None

    def active_params(self) -> int:
        """Parameters one token uses: the router and k of the E experts (sheet section 2, MoE)."""
        return self.router.weight.numel() + self.k * (self.gate_up[0].numel() + self.down[0].numel())

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(router logits [n, E], top-k weights [n, k] renormalised to sum 1, expert ids [n, k]) for tokens x [n, d]."""
        logits = self.router(x)  # [n, E]
        probs = torch.softmax(logits.float(), dim=-1)
        weights, experts = probs.topk(self.k, dim=-1)  # [n, k]
        return logits, weights / weights.sum(-1, keepdim=True), experts

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert e's SwiGLU: down_e(act(gate_e x) * up_e x), x [n, d] -> [n, d]."""
        gate, up = F.linear(x, self.gate_up[e]).chunk(2, dim=-1)  # [n, d_ff] each
        return F.linear(self.act(gate) * up, self.down[e])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape  # [batch, seq, d_model]
        tokens = x.reshape(-1, shape[-1])  # [n, d]
        logits, weights, experts = self.route(tokens)
        self.router_logits = logits.detach() if not torch.is_grad_enabled() else logits
        out = torch.zeros_like(tokens)
        for e in experts.unique().tolist():
            rows, slot = torch.where(experts == e)  # tokens routed to e, and which of their k choices it is
            y = self.expert(e, tokens[rows]) * weights[rows, slot, None].to(tokens.dtype)
            out.index_add_(0, rows, y)
        return out.view(shape)


def load_balancing_loss(
    router_logits: torch.Tensor | tuple[torch.Tensor, ...], k: int, n_experts: int
) -> torch.Tensor:
    """E * sum_e f_e P_e: f_e = share of top-k choices sent to e, P_e = mean router probability (Switch, Fedus 2021, eq. 4).

    router_logits: [tokens, E] or one such tensor per layer (pooled, as transformers' load_balancing_loss_func).
    Counted per choice, sum_e f_e = k, so a perfectly balanced router gives k.
    """
    logits = torch.cat(router_logits) if isinstance(router_logits, (tuple, list)) else router_logits  # [n, E]
    probs = torch.softmax(logits.float(), dim=-1)
    chosen = probs.topk(k, dim=-1).indices  # [n, k]
    counts = F.one_hot(chosen, n_experts).sum(dim=(0, 1)).float()  # [E]
    share = counts / logits.shape[0]
    return n_experts * (share * probs.mean(0)).sum()


def build_ffn(spec: ModelSpec) -> nn.Module:
    """The FFN the spec names: MoE when spec.is_moe, else a plain MLP or a GLU (swiglu / geglu)."""
    if spec.is_moe:
        return MoE(spec)
    return MLP(spec) if spec.ffn_kind == "mlp" else GLU(spec)
