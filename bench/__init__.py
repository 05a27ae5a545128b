"""`make bench`: the machinery that trains, exports, times and compares against reference models."""
