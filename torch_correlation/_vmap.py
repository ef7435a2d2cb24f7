"""``torch.vmap`` batching rules of ``aten::correlation`` and its backward.

The operator already has a batch dimension, so the rule folds the vmapped
dimension into it: a vmapped (C, H, W) input is an (N, C, H, W) batch, and a
vmapped (N, C, H, W) input becomes (B * N, C, H, W) and the result is unfolded
again. Inputs that are not vmapped are expanded to the vmap size (a view for
unbatched inputs; folding an expanded (N, C, H, W) input copies it). Upstream
this is a C++ rule in ``aten/src/ATen/functorch/BatchRulesModules.cpp``; the
preview registers it with ``torch.library.register_vmap``. ``correlation_backward``
gets one too, so that ``vmap(grad(f))`` (per-sample gradients) runs one kernel
call instead of functorch's per-sample loop fallback.
"""

import torch

aten = torch.ops.aten

__all__ = ["activate"]


def _move_to_front(tensor, bdim, batch_size):
    # The tensor with the vmapped dimension first; expanded if not vmapped.
    if bdim is None:
        return tensor.unsqueeze(0).expand(batch_size, *tensor.shape)
    return tensor.movedim(bdim, 0)


def _check_rank(tensor):
    # The logical (per-sample) rank, checked with the operator's message.
    torch._check(
        tensor.dim() - 1 in (3, 4),
        lambda: "correlation(): expected input1 to be a 3D (C, H, W) or 4D (N, C, H, W) "
        f"tensor, but got input1 with sizes {list(tensor.shape[1:])}",
    )
    return tensor.dim() == 5


def _correlation_vmap(info, in_dims, input1, input2, *args, **kwargs):
    batch_size = info.batch_size
    x1 = _move_to_front(input1, in_dims[0], batch_size)
    x2 = _move_to_front(input2, in_dims[1], batch_size)
    if not _check_rank(x1):
        return aten.correlation.default(x1, x2, *args, **kwargs), 0
    n = x1.shape[1]
    out = aten.correlation.default(x1.flatten(0, 1), x2.flatten(0, 1), *args, **kwargs)
    return out.unflatten(0, (batch_size, n)), 0


def _correlation_backward_vmap(info, in_dims, grad_output, input1, input2, *args, **kwargs):
    batch_size = info.batch_size
    grad = _move_to_front(grad_output, in_dims[0], batch_size)
    x1 = _move_to_front(input1, in_dims[1], batch_size)
    x2 = _move_to_front(input2, in_dims[2], batch_size)
    batched = _check_rank(x1)
    if batched:
        n = x1.shape[1]
        grad, x1, x2 = grad.flatten(0, 1), x1.flatten(0, 1), x2.flatten(0, 1)
    grads = aten.correlation_backward.default(grad, x1, x2, *args, **kwargs)
    results = []
    for g in grads:
        if g is not None and batched:
            g = g.unflatten(0, (batch_size, n))
        results.append(g)
    return tuple(results), tuple(None if g is None else 0 for g in results)


_ACTIVE = False


def activate() -> None:
    global _ACTIVE
    if _ACTIVE:
        return
    _ACTIVE = True
    torch.library.register_vmap("aten::correlation", _correlation_vmap)
    torch.library.register_vmap("aten::correlation_backward", _correlation_backward_vmap)
