"""The task of the orchestration benchmark, in a module so that Parsl workers can import it."""


def no_op(index: int) -> int:
    return index
