"""An exponential moving average of a model's weights, updated after every optimizer step.

    ema = WeightAverage(model, decay=0.999)   # a copy of the model, in eval mode
    ema.update()                              # after optimizer.step()
    evaluate(ema.model, ...)                  # the averaged weights often generalize better

The decay warms up as in timm's ModelEmaV3: min(decay, (1 + n) / (10 + n)) after n updates, so the
average follows the model closely in the first epochs instead of lagging behind its random start.
Buffers (BatchNorm statistics) are copied, not averaged.
"""

import copy

import torch


class WeightAverage:
    def __init__(self, model, decay):
        self.source, self.decay, self.updates = model, decay, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self):
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        averaged = list(self.model.parameters())
        torch._foreach_lerp_(averaged, list(self.source.parameters()), 1.0 - decay)
        for mine, theirs in zip(self.model.buffers(), self.source.buffers()):
            mine.copy_(theirs)

    def state_dict(self):
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]
