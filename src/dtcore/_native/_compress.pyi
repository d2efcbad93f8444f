from typing import Any, Callable

def compress_blocks(blocks: list[Any], min_size: int, acceleration: int, skip: bool,
                    max_payload: int, payload: type, view: Callable[[Any, str], memoryview]) -> list[Any]: ...
