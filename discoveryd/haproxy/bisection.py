"""Find the apps that make a rendered file invalid, by bisection (not one by one).

`is_valid(apps)` renders and validates the config with only those apps. With k bad
apps out of n this costs about 2k·log2(n) validations instead of n.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

Validator = Callable[[Sequence[str]], Awaitable[bool]]


async def find_bad_apps(apps: Sequence[str], is_valid: Validator) -> list[str]:
    """Apps to leave out; `apps` is known to be invalid as a whole."""
    if len(apps) <= 1:
        return list(apps)
    mid = len(apps) // 2
    left, right = apps[:mid], apps[mid:]
    left_ok = await is_valid(left)
    right_ok = await is_valid(right)
    if left_ok and right_ok:
        # Only the combination fails (e.g. two apps clash): drop the right half's culprits
        # as seen next to the valid left half.
        return await _bad_next_to(left, right, is_valid)
    bad = [] if left_ok else await find_bad_apps(left, is_valid)
    bad += [] if right_ok else await find_bad_apps(right, is_valid)
    return bad


async def _bad_next_to(good: Sequence[str], suspects: Sequence[str],
                       is_valid: Validator) -> list[str]:
    """Culprits among `suspects` given that `good` alone is valid and good+suspects is not."""
    if len(suspects) <= 1:
        return list(suspects)
    mid = len(suspects) // 2
    first, second = suspects[:mid], suspects[mid:]
    if not await is_valid([*good, *first]):
        return await _bad_next_to(good, first, is_valid)
    return await _bad_next_to([*good, *first], second, is_valid)
