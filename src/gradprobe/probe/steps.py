"""Where a step ends when no torch optimiser says so: a manual update loop.

With a torch optimiser, its step ends the step (`GradientProbe._on_any_optimizer_step`). A
loop that updates the weights itself (`p -= lr * p.grad`, then `model.zero_grad()`) has no
such event, so without help the output-gradient sums of steps that `record()` skipped would
pool into the next recorded step (sqrt(k) times too large after k steps) and steps would be
counted by `record()` calls. `StepTracker` notices the update instead: after each backward
pass a post-accumulate-grad hook notes each measured parameter's gradient tensor, its
version and the parameter's version; at the start of the next forward pass, and again at
its backward's first output gradient (for loops that call `zero_grad()` between forward and
backward), a gradient set to None or replaced, a gradient changed in place (zeroed) or a
parameter changed in place (updated) means the weights moved on: a step ended.

Not seen: an update through `p.data` (it bypasses version counters) together with a gradient
that is neither reset nor zeroed; the probe then cannot tell the passes from gradient
accumulation micro-batches, pools them, and warns (`GradientProbe._warn_pooled`). Under DDP an
all-reduce writes each gradient in place after backward, so there only a reset or replaced
gradient or an updated parameter counts. Under torch.compile the forward-start check is
traced away (no host-side check in compiled code): pass `record(step=...)` there, or use a
torch optimiser.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence

from torch import Tensor
from torch.utils.hooks import RemovableHandle

# (the gradient tensor, its version, the parameter's version) after the last backward pass
_State = tuple["weakref.ReferenceType[Tensor]", int, int]


class StepTracker:
    """Detects the end of a step from parameter and gradient changes between passes."""

    def __init__(self, params: Sequence[Tensor], *, grads_written_after_backward: bool) -> None:
        self._params = list(params)
        self._check_grad_version = not grads_written_after_backward  # False under DDP
        self._after_backward: dict[int, _State] = {}  # param index -> state after backward
        self._fires = [0] * len(self._params)  # backward passes per parameter since record()
        self.active = False

    def hook(self) -> list[RemovableHandle]:
        """Register the post-accumulate-grad hooks on the trainable parameters; the handles."""
        self.active = True
        return [
            param.register_post_accumulate_grad_hook(functools.partial(self._accumulated, index))
            for index, param in enumerate(self._params) if param.requires_grad
        ]

    def _accumulated(self, index: int, param: Tensor) -> None:
        grad = param.grad
        if grad is not None:
            self._after_backward[index] = (weakref.ref(grad), grad._version, param._version)
        self._fires[index] += 1

    def step_ended(self) -> bool:
        """Whether the weights or their gradients changed since the last backward pass (the
        user updated them: a new step), checked at the start of a forward pass."""
        if not self._after_backward:
            return False
        params = self._params
        for index, (grad_ref, grad_version, param_version) in self._after_backward.items():
            param = params[index]
            grad = param.grad
            if grad is None or grad_ref() is not grad or param._version != param_version:
                return True
            if self._check_grad_version and grad._version != grad_version:
                return True
        return False

    def reset(self) -> None:
        """A step ended: forget the state of the last backward pass and the passes counted."""
        self._after_backward.clear()
        self._fires = [0] * len(self._params)

    def passes_since_record(self) -> int:
        """Backward passes that reached the measured parameters since `recorded()` or the
        step began, whichever is later."""
        return max(self._fires, default=0)

    def recorded(self) -> None:
        self._fires = [0] * len(self._params)


def pooled_message(step: int, passes: int, *, compiled: bool) -> str:
    """The warning for a recorded step that pooled several backward passes, no optimiser
    stepping the model (`compiled`: the forward-start check never ran eagerly)."""
    head = (f"record() at step {step} pooled {passes} backward passes into one step: no torch "
            "optimiser stepped the model, and ")
    if compiled:
        return head + (
            "under torch.compile the probe cannot see a manual update between passes. If they "
            "are accumulation micro-batches, that is intended; otherwise call record() after "
            "every backward pass (every=k records fewer), or use a torch optimiser"
        )
    return head + (
        "neither its parameters nor their gradients changed in place between the passes, so "
        "the gradients accumulated. Recorded values are those of the accumulated gradient "
        "(output_grad_norm pooled over the passes). If the passes are accumulation "
        "micro-batches, that is intended; if each is a step of a manual update loop, reset the "
        "gradients between steps (model.zero_grad()) and update the parameters in place "
        "without .data, or call record() after every backward pass (every=k records fewer)"
    )
