from typing_extensions import Buffer

PACKED: int

def pack(root_fd: int, recs: Buffer, offsets: Buffer, max_size: int, block: int, sparse: bool,
         seq0: int, out: Buffer, status: Buffer) -> tuple[int, int, int, int]: ...
def apply_runs(root_fd: int, ops: list[tuple[int, int, int, bytes, int, Buffer]], start: int,
               reserved: bytes, owner: bool) -> int: ...
