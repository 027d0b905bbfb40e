"""The pure core: policy, image references, rules, grouping, keys, schedule and status math.

Nothing here performs I/O or reads the clock; callers pass `now`/`today` in.
"""
