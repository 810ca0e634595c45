"""The instruction's observation space: a ``gymnasium.spaces.Text`` that survives ``AsyncVectorEnv``'s shared memory.

Gymnasium's ``AsyncVectorEnv(shared_memory=True)`` (the default of ``gym.make_vec(..., vectorization_mode="async")``)
reads the shared buffers once, when it is built, and hands back those objects after every step. Arrays are views
of the buffer, so they stay current; a ``Text`` batch is a tuple of strings decoded at that first read, so every
later instruction would be the empty buffer's (400 times "a"). `Instruction` registers, through gymnasium's own
``singledispatch`` hooks, a reader that decodes the buffer each time the batch is copied (``copy=True``, the
default, gives a tuple of the current strings) or read (``copy=False`` gives a live view, like the arrays).
"""

from __future__ import annotations

from gymnasium.spaces import Text
from gymnasium.vector.utils import read_from_shared_memory


class Instruction(Text):
    """``Text`` with a shared-memory reader that stays current (see the module docstring)."""


class _LiveTexts:
    """A batch of instructions decoded from the shared buffer on every read."""

    def __init__(self, space: Instruction, buffer, n: int):
        self._space, self._buffer, self._n = space, buffer, n

    def _decode(self) -> tuple[str, ...]:
        return read_from_shared_memory.dispatch(Text)(self._space, self._buffer, self._n)

    def __deepcopy__(self, memo) -> tuple[str, ...]:
        return self._decode()

    def __getitem__(self, index):
        return self._decode()[index]

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        return iter(self._decode())

    def __repr__(self) -> str:
        return repr(self._decode())


@read_from_shared_memory.register(Instruction)
def _read_live(space: Instruction, shared_memory, n: int = 1) -> _LiveTexts:
    return _LiveTexts(space, shared_memory, n)
