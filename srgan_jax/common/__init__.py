"""What every part uses: the one-line user errors, atomic file writes, the private cache, workdir paths.

Imports nothing else of the package.
"""
