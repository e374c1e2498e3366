"""pytest set-up for the whole repository, the notebooks that nbmake runs included.

A notebook run stalls after a cell whose output goes through an ipywidgets `Output` widget (every
`interact` cell): the next cell's execute request or reply sits unseen until nbclient's cell
timeout (nbmake: 300 s) makes jupyter_client poll the shell socket again, and the run then goes on
as if nothing happened. Measured here with ipykernel 6.31 and 7.4, nbclient 0.10.2 to 0.11.0,
pyzmq 26.4 and 27.3: a notebook of 15 `interact` cells, each followed by `x = 1`, stalls 1 to 5
times per run; a bare slider never does. `make test` lost 300 s per stall, 2 of them in a typical
run of the eleven notebooks. Polling in short slices finds a missed message within half a second
(the same notebook: 3 s per run instead of 17 to 77 s), and changes nothing else: `get_msg` still
returns the next message, or raises `queue.Empty` when `timeout` runs out.
"""
import time
from queue import Empty

try:
    from jupyter_client.channels import AsyncZMQSocketChannel
except ImportError:  # no Jupyter installed: only the unit tests run
    AsyncZMQSocketChannel = None

SLICE_S = 0.5


async def _get_msg_in_slices(self, timeout=None):
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE_S if deadline is None else min(SLICE_S, max(0.0, deadline - time.monotonic()))
        if await self.socket.poll(int(left * 1000)):
            return await self._recv()
        if deadline is not None and time.monotonic() >= deadline:
            raise Empty


if AsyncZMQSocketChannel is not None:
    AsyncZMQSocketChannel.get_msg = _get_msg_in_slices
